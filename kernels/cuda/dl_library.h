// dlopen helpers shared by the libraries the CUDA backend loads at run time (cuBLAS, NCCL).
#pragma once
#include <dlfcn.h>

#include <initializer_list>
#include <string>

namespace reason::kernels::cuda {

// Resolves `name` in `lib` into *out; false with *why naming the symbol and dlerror().
template <typename Fn>
bool resolve_symbol(void* lib, const char* name, Fn* out, std::string* why) {
  dlerror();  // clear
  void* sym = dlsym(lib, name);
  if (!sym) {
    const char* err = dlerror();
    *why = std::string("symbol ") + name + " not found" + (err ? std::string(": ") + err : "");
    return false;
  }
  *out = reinterpret_cast<Fn>(sym);
  return true;
}

// dlopens the first of `sonames` that loads (RTLD_NOW | RTLD_LOCAL): its handle and soname in
// *loaded, or nullptr with every soname's dlerror() in *tried.
inline void* open_first(std::initializer_list<const char*> sonames, std::string* loaded, std::string* tried) {
  for (const char* so : sonames) {
    if (void* lib = dlopen(so, RTLD_NOW | RTLD_LOCAL)) {
      *loaded = so;
      return lib;
    }
    const char* err = dlerror();
    if (!tried->empty()) *tried += "; ";
    *tried += err ? err : so;
  }
  return nullptr;
}

}  // namespace reason::kernels::cuda
