// The backend's GRPO per-token loss op against the formulas written out here in double (TRL's
// GRPOTrainer._compute_loss: the clipped surrogate, k1/k2/k3 KL, verl's k3 clamp, TRL's importance-
// corrected KL), and its gradient against central finite differences of that reference. The
// trainer-level oracle is TRL itself (test_grpo_trl); test_cuda_backend runs the op CPU vs CUDA.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "reason/kernels/backend.h"

using namespace reason::kernels;

namespace {

struct Opts {
  float eps_low, eps_high, beta;
  int kl;
  float k3_clamp;
  bool ratio_correction;
};

double ref_kl(double logp, double ref, const Opts& o, double ratio) {
  double k = 0;
  if (o.kl == 1) k = logp - ref;
  if (o.kl == 2) k = 0.5 * (logp - ref) * (logp - ref);
  if (o.kl == 3) {
    double lr = ref - logp;
    if (o.k3_clamp > 0) lr = std::clamp(lr, -20.0, 20.0);
    k = std::exp(lr) - lr - 1.0;
    if (o.k3_clamp > 0) k = std::clamp(k, -double(o.k3_clamp), double(o.k3_clamp));
  }
  return o.ratio_correction ? k * ratio : k;
}

double ref_loss(double logp, double old, double ref, double A, const Opts& o) {
  const double r = std::exp(logp - old);
  const double c = std::clamp(r, 1.0 - o.eps_low, 1.0 + o.eps_high);
  double l = -std::min(r * A, c * A);
  if (o.beta > 0) l += o.beta * ref_kl(logp, ref, o, r);
  return l;
}

}  // namespace

TEST_CASE("grpo_token_loss: loss, KL, clip counts and gradient against double and finite differences", "[loss_ops]") {
  const Opts cases[] = {{0.2f, 0.2f, 0.0f, 3, 10.0f, false}, {0.2f, 0.28f, 0.04f, 3, 10.0f, false},
                        {0.1f, 0.3f, 0.1f, 1, 0.0f, false},  {0.2f, 0.2f, 0.05f, 2, 0.0f, true},
                        {0.2f, 0.2f, 0.05f, 3, 0.5f, true}};
  const int64_t n = 400;
  std::mt19937 rng(17);
  std::normal_distribution<float> nd;
  std::vector<float> logp(n), old(n), ref(n), adv(n);
  std::vector<double> w(n);
  for (int64_t t = 0; t < n; ++t) {
    logp[size_t(t)] = -2.0f + 0.8f * nd(rng);
    old[size_t(t)] = logp[size_t(t)] + 0.25f * nd(rng);  // ratios on both sides of the clip range
    ref[size_t(t)] = logp[size_t(t)] + (t % 50 == 7 ? 30.0f : 0.6f * nd(rng));  // a few beyond the k3 clamp
    adv[size_t(t)] = (t / 20) % 3 == 0 ? -1.2f : 0.9f;
    w[size_t(t)] = t % 37 == 5 ? 0.0 : 1.0 / double(20 + t % 7);  // some masked tokens
  }
  for (const Opts& o : cases) {
    INFO("eps " << o.eps_low << "/" << o.eps_high << " beta " << o.beta << " kl k" << o.kl << " clamp " << o.k3_clamp
                << " ratio correction " << o.ratio_correction);
    std::vector<float> dl(n, NAN);
    double sums[5];
    GrpoLossArgs a;
    a.logp = logp.data(), a.old_logp = old.data(), a.ref_logp = o.beta > 0 ? ref.data() : nullptr, a.adv = adv.data();
    a.weight = w.data(), a.n = n, a.eps_low = o.eps_low, a.eps_high = o.eps_high, a.beta = o.beta, a.kl = o.kl;
    a.k3_clamp = o.k3_clamp, a.kl_ratio_correction = o.ratio_correction, a.dlogp = dl.data(), a.sums = sums;
    cpu_backend().grpo_token_loss(a);
    double loss = 0, kl = 0, low = 0, high = 0, live = 0;
    for (int64_t t = 0; t < n; ++t) {
      const double lp = logp[size_t(t)], od = old[size_t(t)], rf = ref[size_t(t)], A = adv[size_t(t)], wt = w[size_t(t)];
      if (wt == 0.0) {
        CHECK(dl[size_t(t)] == 0.0f);
        continue;
      }
      const double r = std::exp(lp - od);
      loss += wt * ref_loss(lp, od, rf, A, o);
      if (o.beta > 0) kl += ref_kl(lp, rf, o, r);
      low += r < 1.0 - o.eps_low && A < 0;
      high += r > 1.0 + o.eps_high && A > 0;
      live += 1;
      // d/dlogp by central differences of the reference (away from the clip and clamp kinks)
      const double h = 1e-6;
      const double lo = 1.0 - o.eps_low, hi = 1.0 + o.eps_high;
      const bool near_kink = std::fabs(r - lo) < 1e-4 || std::fabs(r - hi) < 1e-4 ||
                             (o.kl == 3 && o.k3_clamp > 0 && std::fabs(ref_kl(lp, rf, Opts{0, 0, 0, 3, 0, false}, 1) - o.k3_clamp) < 1e-3);
      if (near_kink) continue;
      const double fd = wt * (ref_loss(lp + h, od, rf, A, o) - ref_loss(lp - h, od, rf, A, o)) / (2 * h);
      INFO("token " << t << " ratio " << r);
      CHECK(std::fabs(dl[size_t(t)] - fd) <= 1e-6 * (std::fabs(fd) + wt));
    }
    CHECK(sums[0] == Approx(loss).epsilon(1e-12).margin(1e-15));
    CHECK(sums[1] == Approx(kl).epsilon(1e-12).margin(1e-15));
    CHECK(sums[2] == low);
    CHECK(sums[3] == high);
    CHECK(sums[4] == live);
    CHECK(low > 0);
    CHECK(high > 0);
  }
  GrpoLossArgs bad;
  double s[5];
  bad.n = 1, bad.sums = s, bad.logp = logp.data(), bad.adv = adv.data(), bad.weight = w.data();
  std::vector<float> d(1);
  bad.dlogp = d.data(), bad.beta = 0.1f;
  CHECK_THROWS_WITH(cpu_backend().grpo_token_loss(bad), Catch::Contains("ref_logp"));
  bad.beta = 0, bad.kl = 4;
  CHECK_THROWS_WITH(cpu_backend().grpo_token_loss(bad), Catch::Contains("kl must be"));
}

TEST_CASE("grpo_token_loss: a given log importance weight, a policy-term scale and the split gradient",
          "[loss_ops]") {
  // loss_t = s_t * -min(exp(lw) A, clip(exp(lw)) A) + beta k3 exp(lw) (bias-corrected KL): its
  // derivatives by lw (dlog_weight) and by logp with lw fixed (dlogp) against central differences,
  // and, without dlog_weight, their sum in dlogp (GSPO-token's per-token gradient).
  const Opts o{0.2f, 0.28f, 0.05f, 3, 0.0f, true};
  const int64_t n = 300;
  std::mt19937 rng(29);
  std::normal_distribution<float> nd;
  std::vector<float> logp(n), lw(n), scale(n), ref(n), adv(n);
  std::vector<double> w(n);
  for (int64_t t = 0; t < n; ++t) {
    logp[size_t(t)] = -2.0f + 0.8f * nd(rng);
    lw[size_t(t)] = 0.3f * nd(rng);
    scale[size_t(t)] = t % 5 == 0 ? 0.0f : 0.5f + 0.1f * float(t % 7);
    ref[size_t(t)] = logp[size_t(t)] + 0.5f * nd(rng);
    adv[size_t(t)] = t % 3 == 0 ? -0.8f : 1.1f;
    w[size_t(t)] = t % 41 == 9 ? 0.0 : 1.0 / double(30 + t % 5);
  }
  auto loss_of = [&](double lp, double lwv, int64_t t) {
    const double r = std::exp(lwv), c = std::clamp(r, 1.0 - o.eps_low, 1.0 + o.eps_high), A = adv[size_t(t)];
    return -std::min(r * A, c * A) * scale[size_t(t)] + o.beta * ref_kl(lp, ref[size_t(t)], o, r);
  };
  std::vector<float> dl(n, NAN), dlw(n, NAN), dsum(n, NAN);
  double sums[5], sums2[5];
  GrpoLossArgs a;
  a.logp = logp.data(), a.log_weight = lw.data(), a.pg_scale = scale.data(), a.ref_logp = ref.data();
  a.adv = adv.data(), a.weight = w.data(), a.n = n, a.eps_low = o.eps_low, a.eps_high = o.eps_high, a.beta = o.beta;
  a.kl = 3, a.k3_clamp = 0.0f, a.kl_ratio_correction = true, a.dlogp = dl.data(), a.dlog_weight = dlw.data(), a.sums = sums;
  cpu_backend().grpo_token_loss(a);
  GrpoLossArgs b = a;
  b.dlog_weight = nullptr, b.dlogp = dsum.data(), b.sums = sums2;
  cpu_backend().grpo_token_loss(b);
  double loss = 0;
  for (int64_t t = 0; t < n; ++t) {
    INFO("token " << t);
    const double lp = logp[size_t(t)], lwv = lw[size_t(t)], wt = w[size_t(t)];
    if (wt == 0.0) {
      CHECK(dl[size_t(t)] == 0.0f);
      CHECK(dlw[size_t(t)] == 0.0f);
      continue;
    }
    loss += wt * loss_of(lp, lwv, t);
    const double r = std::exp(lwv), h = 1e-6;
    if (std::fabs(r - 0.8) < 1e-4 || std::fabs(r - 1.28) < 1e-4) continue;
    const double fd_lp = wt * (loss_of(lp + h, lwv, t) - loss_of(lp - h, lwv, t)) / (2 * h);
    const double fd_lw = wt * (loss_of(lp, lwv + h, t) - loss_of(lp, lwv - h, t)) / (2 * h);
    CHECK(std::fabs(dl[size_t(t)] - fd_lp) <= 1e-6 * (std::fabs(fd_lp) + wt));
    CHECK(std::fabs(dlw[size_t(t)] - fd_lw) <= 1e-6 * (std::fabs(fd_lw) + wt));
    CHECK(std::fabs(dsum[size_t(t)] - (fd_lp + fd_lw)) <= 2e-6 * (std::fabs(fd_lp + fd_lw) + wt));
  }
  CHECK(sums[0] == Approx(loss).epsilon(1e-12));
  for (int i = 0; i < 5; ++i) CHECK(sums2[i] == sums[i]);
}

TEST_CASE("distill_rows: forward KL, reverse KL and JSD rows and their logit gradient against double", "[loss_ops]") {
  // The reference: the divergence of softmax(z_t / T) and softmax(z_s / T) in double, and its
  // gradient to z_s by central differences (the op's gradient is the exact one, to f32 rounding).
  const int64_t rows = 5, n = 37;
  const float T = 2.0f, inv_t = 1.0f / T;
  std::mt19937 rng(23);
  std::normal_distribution<float> nd;
  std::vector<float> zs(rows * n), zt(rows * n), lse_s(rows), lse_t(rows), w = {0.25f, 0.0f, 0.25f, 1.0f, 0.5f};
  for (auto& x : zs) x = 2.0f * nd(rng);
  for (auto& x : zt) x = 2.0f * nd(rng);
  auto lse_of = [&](const float* z) {
    double m = -INFINITY, s = 0;
    for (int64_t j = 0; j < n; ++j) m = std::max(m, double(z[j] * inv_t));
    for (int64_t j = 0; j < n; ++j) s += std::exp(double(z[j] * inv_t) - m);
    return m + std::log(s);
  };
  for (int64_t r = 0; r < rows; ++r) lse_s[size_t(r)] = float(lse_of(&zs[size_t(r * n)])), lse_t[size_t(r)] = float(lse_of(&zt[size_t(r * n)]));
  // The divergence of row r as a function of the student's logits, in double.
  auto div = [&](int kind, double beta, const std::vector<double>& z, int64_t r) {
    double ms = -INFINITY, ss = 0, mt = -INFINITY, st = 0;
    for (int64_t j = 0; j < n; ++j) ms = std::max(ms, z[size_t(j)] / T), mt = std::max(mt, double(zt[size_t(r * n + j)]) / T);
    for (int64_t j = 0; j < n; ++j) ss += std::exp(z[size_t(j)] / T - ms), st += std::exp(double(zt[size_t(r * n + j)]) / T - mt);
    double l = 0;
    for (int64_t j = 0; j < n; ++j) {
      const double lp = z[size_t(j)] / T - ms - std::log(ss), lq = double(zt[size_t(r * n + j)]) / T - mt - std::log(st);
      const double s = std::exp(lp), q = std::exp(lq);
      if (kind == 0) l += q * (lq - lp);
      if (kind == 1) l += s * (lp - lq);
      if (kind == 2) {
        const double lm = std::log(beta * q + (1 - beta) * s);
        l += beta * q * (lq - lm) + (1 - beta) * s * (lp - lm);
      }
    }
    return l;
  };
  for (int kind : {0, 1, 2}) {
    const double beta = 0.3;
    INFO("kind " << kind);
    std::vector<float> g = zs;
    std::vector<double> loss(rows, -1.0);
    DistillRowsArgs a;
    a.z_s = g.data(), a.lse_s = lse_s.data(), a.z_t = zt.data(), a.lse_t = lse_t.data(), a.weight = w.data();
    a.rows = rows, a.n = n, a.inv_t = inv_t, a.kind = DistillKind(kind), a.beta = beta, a.loss = loss.data();
    cpu_backend().distill_rows(a);
    for (int64_t r = 0; r < rows; ++r) {
      INFO("row " << r);
      std::vector<double> z(zs.begin() + r * n, zs.begin() + (r + 1) * n);
      if (w[size_t(r)] == 0.0f) {
        CHECK(loss[size_t(r)] == 0.0);
        for (int64_t j = 0; j < n; ++j) CHECK(g[size_t(r * n + j)] == 0.0f);
        continue;
      }
      const double want = div(kind, beta, z, r);
      CHECK(loss[size_t(r)] == Approx(want).epsilon(1e-5).margin(1e-6));  // f32 logprobs inside
      for (int64_t j = 0; j < n; ++j) {
        auto zp = z, zm = z;
        const double h = 1e-4;
        zp[size_t(j)] += h, zm[size_t(j)] -= h;
        const double fd = w[size_t(r)] * (div(kind, beta, zp, r) - div(kind, beta, zm, r)) / (2 * h);
        CHECK(std::fabs(g[size_t(r * n + j)] - fd) <= 2e-5 * w[size_t(r)] + 1e-6);
      }
    }
  }
  DistillRowsArgs bad;
  std::vector<double> l(1);
  bad.z_s = zs.data(), bad.lse_s = lse_s.data(), bad.z_t = zt.data(), bad.lse_t = lse_t.data(), bad.weight = w.data();
  bad.rows = 1, bad.n = n, bad.loss = l.data(), bad.kind = DistillKind::JSD, bad.beta = 1.0;
  CHECK_THROWS_WITH(cpu_backend().distill_rows(bad), Catch::Contains("beta"));
}
