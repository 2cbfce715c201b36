// dlopen-based cuBLAS loader; see cublas_loader.h.
#include "cublas_loader.h"

#include "dl_library.h"

namespace reason::kernels::cuda {

namespace {

struct Loaded {
  CublasApi api;
  bool ok = false;
  std::string why;
};

Loaded load() {
  Loaded r;
  std::string tried;
  // Sonames in order of preference: the major version we compiled against first.
  void* lib = open_first({"libcublas.so.13", "libcublas.so.12", "libcublas.so"}, &r.api.library, &tried);
  if (!lib) {
    r.why = "cannot load cuBLAS (" + tried + ")";
    return r;
  }
  std::string err;
  if (!resolve_symbol(lib, "cublasCreate_v2", &r.api.create, &err) ||
      !resolve_symbol(lib, "cublasDestroy_v2", &r.api.destroy, &err) ||
      !resolve_symbol(lib, "cublasSetStream_v2", &r.api.set_stream, &err) ||
      !resolve_symbol(lib, "cublasSetMathMode", &r.api.set_math_mode, &err) ||
      !resolve_symbol(lib, "cublasGemmEx", &r.api.gemm_ex, &err)) {
    r.why = r.api.library + ": " + err;
    dlclose(lib);
    r.api = CublasApi{};
    return r;
  }
  // Optional (cuBLAS >= 11.4): nicer error messages.
  dlerror();
  r.api.get_status_string =
      reinterpret_cast<CublasApi::GetStatusStringFn>(dlsym(lib, "cublasGetStatusString"));
  dlerror();
  r.ok = true;
  return r;  // `lib` is intentionally never closed
}

const char* status_name(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
  }
  return nullptr;
}

}  // namespace

std::string CublasApi::status_string(cublasStatus_t s) const {
  const char* name = status_name(s);
  std::string out = name ? name : "cublasStatus_t " + std::to_string(int(s));
  if (get_status_string) {
    const char* text = get_status_string(s);
    if (text && (!name || std::string(text) != name)) out += std::string(" (") + text + ")";
  }
  return out;
}

const CublasApi* cublas_api(std::string* why) {
  static const Loaded loaded = load();  // thread-safe one-time initialisation
  if (!loaded.ok) {
    if (why) *why = loaded.why;
    return nullptr;
  }
  return &loaded.api;
}

}  // namespace reason::kernels::cuda
