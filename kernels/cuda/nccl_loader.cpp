// dlopen-based NCCL loader; see nccl_loader.h.
#include "nccl_loader.h"

#include "dl_library.h"

namespace reason::kernels::cuda {

namespace {

struct Loaded {
  NcclApi api;
  bool ok = false;
  std::string why;
};

Loaded load() {
  Loaded r;
  std::string tried;
  void* lib = open_first({"libnccl.so.2", "libnccl.so"}, &r.api.library, &tried);
  if (!lib) {
    r.why = "cannot load NCCL (" + tried + ")";
    return r;
  }
  std::string err;
  NcclApi& a = r.api;
  if (!resolve_symbol(lib, "ncclGetUniqueId", &a.get_unique_id, &err) || !resolve_symbol(lib, "ncclCommInitRank", &a.comm_init_rank, &err) ||
      !resolve_symbol(lib, "ncclCommDestroy", &a.comm_destroy, &err) || !resolve_symbol(lib, "ncclAllReduce", &a.all_reduce, &err) ||
      !resolve_symbol(lib, "ncclBroadcast", &a.broadcast, &err) || !resolve_symbol(lib, "ncclGroupStart", &a.group_start, &err) ||
      !resolve_symbol(lib, "ncclGroupEnd", &a.group_end, &err) || !resolve_symbol(lib, "ncclGetErrorString", &a.get_error_string, &err) ||
      !resolve_symbol(lib, "ncclCommAbort", &a.comm_abort, &err) ||
      !resolve_symbol(lib, "ncclCommGetAsyncError", &a.comm_get_async_error, &err)) {
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
