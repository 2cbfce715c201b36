// Built when REASON_CUDA is off: the CUDA backend is absent and says why.
#include "reason/kernels/backend.h"

namespace reason::kernels {

Backend* cuda_backend(std::string* why) {
  if (why) *why = "libreason was built without CUDA (REASON_CUDA=OFF)";
  return nullptr;
}

}  // namespace reason::kernels
