// Internal to kernels/: REASON_HD marks a function that both backends compile, the C++ compiler for
// the CPU backend and nvcc for the CUDA one (host and device), so the two share one formula.
#pragma once

#if defined(__CUDACC__)
#define REASON_HD __host__ __device__ inline
#else
#define REASON_HD inline
#endif
