// cuBLAS, loaded at run time with dlopen (CTranslate2's cublas_stub pattern).
//
// libreason never links libcublas: a machine without the CUDA libraries (or without an NVIDIA
// driver) must still load libreason.so and run on the CPU. The first call to cublas_api()
// dlopens libcublas.so.13 (then .so.12, then the unversioned name) and resolves the handful of
// functions the CUDA backend uses into a table of function pointers. Only cuBLAS *types* come
// from the headers; no cuBLAS symbol is referenced by the object code.
//
// Threads: cublas_api() is safe to call from any thread; the load happens once and its result
// (the table or the reason it failed) is kept for the life of the process. The library is never
// dlclose'd (handles created from it may live until exit).
#pragma once
#include <cublas_api.h>  // types only (cublasHandle_t, cublasStatus_t, enums)

#include <string>

namespace reason::kernels::cuda {

struct CublasApi {
  using CreateFn = cublasStatus_t (*)(cublasHandle_t*);
  using DestroyFn = cublasStatus_t (*)(cublasHandle_t);
  using SetStreamFn = cublasStatus_t (*)(cublasHandle_t, cudaStream_t);
  using SetMathModeFn = cublasStatus_t (*)(cublasHandle_t, cublasMath_t);
  using GemmExFn = cublasStatus_t (*)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int m,
                                      int n, int k, const void* alpha, const void* A,
                                      cudaDataType Atype, int lda, const void* B,
                                      cudaDataType Btype, int ldb, const void* beta, void* C,
                                      cudaDataType Ctype, int ldc, cublasComputeType_t computeType,
                                      cublasGemmAlgo_t algo);
  using GetStatusStringFn = const char* (*)(cublasStatus_t);

  CreateFn create = nullptr;             // cublasCreate_v2
  DestroyFn destroy = nullptr;           // cublasDestroy_v2
  SetStreamFn set_stream = nullptr;      // cublasSetStream_v2
  SetMathModeFn set_math_mode = nullptr; // cublasSetMathMode
  GemmExFn gemm_ex = nullptr;            // cublasGemmEx
  GetStatusStringFn get_status_string = nullptr;  // cublasGetStatusString (optional)

  std::string library;  // the soname that was loaded, e.g. "libcublas.so.13"

  // "CUBLAS_STATUS_INVALID_VALUE: ..." style text for a status; works without the optional symbol.
  std::string status_string(cublasStatus_t s) const;
};

// The process-wide cuBLAS table, or nullptr when cuBLAS cannot be loaded; then *why (if given)
// names every library that was tried and dlerror()'s reason, or the missing symbol.
const CublasApi* cublas_api(std::string* why = nullptr);

}  // namespace reason::kernels::cuda
