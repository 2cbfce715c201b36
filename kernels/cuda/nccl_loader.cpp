// dlopen-based NCCL loader; see nccl_loader.h.
#include "nccl_loader.h"

#include <dlfcn.h>

namespace reason::kernels::cuda {

namespace {

struct Loaded {
  NcclApi api;
  bool ok = false;
  std::string why;
};

template <typename Fn>
bool resolve(void* lib, const char* name, Fn* out, std::string* why) {
  dlerror();
  void* sym = dlsym(lib, name);
  if (!sym) {
    const char* err = dlerror();
    *why = std::string("symbol ") + name + " not found" + (err ? std::string(": ") + err : "");
    return false;
  }
  *out = reinterpret_cast<Fn>(sym);
  return true;
}

Loaded load() {
  Loaded r;
  void* lib = nullptr;
  std::string tried;
  for (const char* so : {"libnccl.so.2", "libnccl.so"}) {
    lib = dlopen(so, RTLD_NOW | RTLD_LOCAL);
    if (lib) {
      r.api.library = so;
      break;
    }
    const char* err = dlerror();
    if (!tried.empty()) tried += "; ";
    tried += err ? err : so;
  }
  if (!lib) {
    r.why = "cannot load NCCL (" + tried + ")";
    return r;
  }
  std::string err;
  NcclApi& a = r.api;
  if (!resolve(lib, "ncclGetUniqueId", &a.get_unique_id, &err) || !resolve(lib, "ncclCommInitRank", &a.comm_init_rank, &err) ||
      !resolve(lib, "ncclCommDestroy", &a.comm_destroy, &err) || !resolve(lib, "ncclAllReduce", &a.all_reduce, &err) ||
      !resolve(lib, "ncclBroadcast", &a.broadcast, &err) || !resolve(lib, "ncclGroupStart", &a.group_start, &err) ||
      !resolve(lib, "ncclGroupEnd", &a.group_end, &err) || !resolve(lib, "ncclGetErrorString", &a.get_error_string, &err)) {
    r.why = a.library + ": " + err;
    dlclose(lib);
    r.api = NcclApi{};
    return r;
  }
  r.ok = true;
  return r;
}

}  // namespace

const NcclApi* nccl_api(std::string* why) {
  static const Loaded loaded = load();
  if (!loaded.ok) {
    if (why) *why = loaded.why;
    return nullptr;
  }
  return &loaded.api;
}

}  // namespace reason::kernels::cuda
