// Vectorised row math for the CPU side of the training passes (softmax statistics over the
// vocabulary). Pure functions, thread-safe.
#pragma once
#include <cstdint>

namespace reason::kernels {

// For e_j = exp(z_j * scale - shift), j < n: returns sum_j e_j (accumulated in double), writes
// e_j to out when out is non-null, and sum_j e_j * z_j * scale to *dot when dot is non-null.
// AVX2 polynomial exp (Cephes), relative error ~2e-7; inputs below -87 give 0.
double scaled_exp_sum(const float* z, int64_t n, float scale, float shift, float* out, double* dot);

// max_j z_j
float row_max(const float* z, int64_t n);

}  // namespace reason::kernels
