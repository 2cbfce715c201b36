// The backend's Mixture-of-Experts ops against references computed in double, written here from
// the formulas (backend.h): routing (softmax and grouped sigmoid scoring, with and without
// normalisation, bias and scale), its backward against finite differences of the reference
// weights, the expert row dots and the sigmoid gate. test_cuda_backend runs them CPU vs CUDA.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "reason/kernels/backend.h"

using namespace reason::kernels;

namespace {

// Logits on a grid (a random permutation per row), off-centre so that no two experts -- and no
// two groups (sigmoid(u) + sigmoid(-u) = 1 would tie pairs symmetric around 0) -- tie within float
// rounding: the reference's choice is unambiguous.
std::vector<float> grid_logits(int64_t rows, int E, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<float> v(size_t(rows * E));
  std::vector<int> perm(static_cast<size_t>(E));
  for (int64_t t = 0; t < rows; ++t) {
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    for (int e = 0; e < E; ++e) v[size_t(t * E + e)] = 0.123f + 0.37f * float(perm[size_t(e)] - E / 2) / float(E) * 8.0f;
  }
  return v;
}

struct Ref {
  std::vector<int32_t> idx;
  std::vector<double> w;
};

// Routing of one row in double, straight from backend.h's description.
Ref route_ref(const MoeRouteArgs& a, const float* lg) {
  const int E = a.n_experts, K = a.top_k;
  std::vector<double> p(static_cast<size_t>(E)), choice(static_cast<size_t>(E));
  if (!a.sigmoid) {
    double mx = -INFINITY, z = 0;
    for (int e = 0; e < E; ++e) mx = std::max(mx, double(lg[e]));
    for (int e = 0; e < E; ++e) z += std::exp(double(lg[e]) - mx);
    for (int e = 0; e < E; ++e) choice[size_t(e)] = p[size_t(e)] = std::exp(double(lg[e]) - mx) / z;
  } else {
    for (int e = 0; e < E; ++e) {
      p[size_t(e)] = 1.0 / (1.0 + std::exp(-double(lg[e])));
      choice[size_t(e)] = p[size_t(e)] + (a.bias ? a.bias[e] : 0.0);
    }
    if (a.n_group > 1) {
      const int per = E / a.n_group;
      std::vector<std::pair<double, int>> gs;
      for (int g = 0; g < a.n_group; ++g) {
        std::vector<double> c(choice.begin() + g * per, choice.begin() + (g + 1) * per);
        std::sort(c.rbegin(), c.rend());
        gs.push_back({-(per >= 2 ? c[0] + c[1] : c[0]), g});
      }
      std::sort(gs.begin(), gs.end());
      std::vector<bool> kept(static_cast<size_t>(a.n_group), false);
      for (int k = 0; k < a.topk_group; ++k) kept[size_t(gs[size_t(k)].second)] = true;
      for (int e = 0; e < E; ++e)
        if (!kept[size_t(e / per)]) choice[size_t(e)] = -INFINITY;
    }
  }
  std::vector<std::pair<double, int>> order;
  for (int e = 0; e < E; ++e) order.push_back({-choice[size_t(e)], e});
  std::sort(order.begin(), order.end());
  Ref r;
  double s = 0;
  for (int j = 0; j < K; ++j) {
    r.idx.push_back(order[size_t(j)].second);
    r.w.push_back(p[size_t(order[size_t(j)].second)]);
    s += r.w.back();
  }
  for (double& w : r.w) w = (a.norm_topk_prob ? w / s : w) * a.scale;
  return r;
}

// The weights of fixed experts `idx` as a function of the logits, in double (for finite differences).
std::vector<double> weights_of(const MoeRouteArgs& a, const std::vector<double>& lg, const int32_t* idx) {
  const int E = a.n_experts, K = a.top_k;
  std::vector<double> r(static_cast<size_t>(K));
  double mx = -INFINITY, z = 0;
  for (double x : lg) mx = std::max(mx, x);
  for (double x : lg) z += std::exp(x - mx);
  double s = 0;
  for (int j = 0; j < K; ++j) {
    const double x = lg[size_t(idx[j])];
    r[size_t(j)] = a.sigmoid ? 1.0 / (1.0 + std::exp(-x)) : std::exp(x - mx) / z;
    s += r[size_t(j)];
  }
  (void)E;
  for (double& v : r) v = (a.norm_topk_prob ? v / s : v) * a.scale;
  return r;
}

struct RouteCase {
  bool sigmoid;
  int E, K, n_group, topk_group;
  bool norm, bias;
  float scale;
};

}  // namespace

TEST_CASE("moe_route: the chosen experts and their weights against double", "[moe_ops]") {
  const RouteCase cases[] = {{false, 8, 2, 1, 1, false, false, 1.0f},  {false, 60, 4, 1, 1, true, false, 1.0f},
                             {true, 16, 4, 4, 2, true, true, 2.5f},    {true, 64, 6, 8, 3, true, true, 2.5f},
                             {true, 12, 3, 1, 1, false, true, 1.0f},   {true, 10, 2, 5, 2, true, false, 1.0f}};
  for (const RouteCase& c : cases) {
    INFO("sigmoid " << c.sigmoid << " E " << c.E << " K " << c.K << " groups " << c.n_group << "/" << c.topk_group);
    const int64_t T = 37;
    const auto logits = grid_logits(T, c.E, uint32_t(c.E * 7 + c.K));
    std::vector<float> bias(static_cast<size_t>(c.E));
    for (int e = 0; e < c.E; ++e) bias[size_t(e)] = 0.125f * float((e * 5) % 7 - 3);
    std::vector<int32_t> idx(size_t(T * c.K), -1);
    std::vector<float> w(size_t(T * c.K), NAN);
    MoeRouteArgs a;
    a.logits = logits.data();
    a.bias = c.bias ? bias.data() : nullptr;
    a.rows = T;
    a.n_experts = c.E, a.top_k = c.K, a.sigmoid = c.sigmoid, a.n_group = c.n_group, a.topk_group = c.topk_group;
    a.norm_topk_prob = c.norm, a.scale = c.scale, a.idx = idx.data(), a.weight = w.data();
    cpu_backend().moe_route(a);
    for (int64_t t = 0; t < T; ++t) {
      const Ref r = route_ref(a, logits.data() + t * c.E);
      for (int j = 0; j < c.K; ++j) {
        INFO("row " << t << " slot " << j);
        REQUIRE(idx[size_t(t * c.K + j)] == r.idx[size_t(j)]);
        // float softmax / sigmoid and a K-term sum: a few ulp of the weight
        CHECK(std::fabs(w[size_t(t * c.K + j)] - r.w[size_t(j)]) <= 1e-6 * std::fabs(r.w[size_t(j)]) + 1e-12);
      }
    }
  }
}

TEST_CASE("moe_route_bwd: the weights' gradient to the logits against finite differences", "[moe_ops]") {
  const RouteCase cases[] = {{false, 8, 2, 1, 1, false, false, 1.0f}, {false, 20, 3, 1, 1, true, false, 1.5f},
                             {true, 16, 4, 4, 2, true, true, 2.5f},   {true, 12, 3, 1, 1, false, true, 1.0f}};
  for (const RouteCase& c : cases) {
    INFO("sigmoid " << c.sigmoid << " E " << c.E << " K " << c.K << " norm " << c.norm);
    const int64_t T = 9;
    const auto logits = grid_logits(T, c.E, uint32_t(c.E + 3));
    std::vector<int32_t> idx(size_t(T * c.K));
    std::vector<float> w(size_t(T * c.K)), dw(size_t(T * c.K)), dl(size_t(T * c.E), NAN);
    std::mt19937 rng(5);
    std::normal_distribution<float> nd;
    for (auto& x : dw) x = nd(rng);
    MoeRouteArgs a;
    a.logits = logits.data();
    a.rows = T;
    a.n_experts = c.E, a.top_k = c.K, a.sigmoid = c.sigmoid, a.n_group = c.n_group, a.topk_group = c.topk_group;
    a.norm_topk_prob = c.norm, a.scale = c.scale, a.idx = idx.data(), a.weight = w.data();
    cpu_backend().moe_route(a);
    cpu_backend().moe_route_bwd(a, dw.data(), dl.data());
    for (int64_t t = 0; t < T; ++t)
      for (int e = 0; e < c.E; ++e) {
        std::vector<double> lp(logits.begin() + t * c.E, logits.begin() + (t + 1) * c.E), lm = lp;
        const double h = 1e-5;
        lp[size_t(e)] += h, lm[size_t(e)] -= h;
        const auto wp = weights_of(a, lp, idx.data() + t * c.K), wm = weights_of(a, lm, idx.data() + t * c.K);
        double fd = 0, mag = 0;
        for (int j = 0; j < c.K; ++j) {
          fd += double(dw[size_t(t * c.K + j)]) * (wp[size_t(j)] - wm[size_t(j)]) / (2 * h);
          mag += std::fabs(dw[size_t(t * c.K + j)]) * c.scale;
        }
        INFO("row " << t << " expert " << e);
        // f32 arithmetic on O(mag) values; finite differences ~h^2
        CHECK(std::fabs(dl[size_t(t * c.E + e)] - fd) <= 1e-5 * mag + 1e-9);
      }
  }
}

TEST_CASE("moe_route rejects impossible routing with a BackendError naming it", "[moe_ops]") {
  std::vector<float> lg(16, 0.0f), w(16);
  std::vector<int32_t> idx(16);
  MoeRouteArgs a;
  a.logits = lg.data(), a.idx = idx.data(), a.weight = w.data(), a.rows = 1, a.n_experts = 8, a.top_k = 9;
  CHECK_THROWS_WITH(cpu_backend().moe_route(a), Catch::Contains("top_k"));
  a.top_k = 2, a.sigmoid = true, a.n_group = 3;
  CHECK_THROWS_WITH(cpu_backend().moe_route(a), Catch::Contains("n_group must divide"));
  a.n_group = 4, a.topk_group = 5;
  CHECK_THROWS_WITH(cpu_backend().moe_route(a), Catch::Contains("topk_group"));
  a.topk_group = 1, a.top_k = 3;  // one kept group of 2 experts cannot give 3
  CHECK_THROWS_WITH(cpu_backend().moe_route(a), Catch::Contains("fewer than top_k"));
  a.top_k = 2, a.logits = nullptr;
  CHECK_THROWS_WITH(cpu_backend().moe_route(a), Catch::Contains("null"));
}

TEST_CASE("gather_scale_dot and the sigmoid gate against double", "[moe_ops]") {
  const int64_t n = 7, rows = 11, dim = 45;
  std::mt19937 rng(9);
  std::normal_distribution<float> nd;
  auto rnd = [&](size_t k) {
    std::vector<float> v(k);
    for (auto& x : v) x = nd(rng);
    return v;
  };
  const auto src = rnd(size_t(rows * dim)), y = rnd(size_t(n * dim)), scale = rnd(size_t(n));
  const std::vector<int32_t> ids = {3, 0, 10, 3, 7, 1, 9};
  for (bool with_ids : {true, false}) {
    std::vector<float> dst(size_t(n * dim)), dots(static_cast<size_t>(n));
    cpu_backend().gather_scale_dot(dst.data(), dots.data(), src.data(), with_ids ? ids.data() : nullptr, scale.data(),
                                   y.data(), n, dim);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t s = with_ids ? ids[size_t(i)] : i;
      double e = 0, mag = 0;
      for (int64_t c = 0; c < dim; ++c) {
        e += double(src[size_t(s * dim + c)]) * y[size_t(i * dim + c)];
        mag += std::fabs(double(src[size_t(s * dim + c)]) * y[size_t(i * dim + c)]);
        CHECK(dst[size_t(i * dim + c)] == scale[size_t(i)] * src[size_t(s * dim + c)]);  // one f32 product
      }
      CHECK(std::fabs(dots[size_t(i)] - e) <= 1e-7 * mag);  // a double sum rounded once to f32
    }
  }
  const auto z = rnd(size_t(rows)), yy = rnd(size_t(rows * dim)), dout = rnd(size_t(rows * dim)), out0 = rnd(size_t(rows * dim));
  auto out = out0;
  std::vector<float> dy(size_t(rows * dim)), dz(static_cast<size_t>(rows));
  cpu_backend().sigmoid_gate_add(out.data(), z.data(), yy.data(), rows, dim);
  cpu_backend().sigmoid_gate_bwd(dy.data(), dz.data(), z.data(), yy.data(), dout.data(), rows, dim);
  for (int64_t t = 0; t < rows; ++t) {
    const double g = 1.0 / (1.0 + std::exp(-double(z[size_t(t)])));
    double dot = 0, mag = 0;
    for (int64_t c = 0; c < dim; ++c) {
      const size_t k = size_t(t * dim + c);
      CHECK(std::fabs(out[k] - (out0[k] + g * yy[k])) <= 1e-6 * (std::fabs(out0[k]) + std::fabs(g * yy[k])));
      CHECK(std::fabs(dy[k] - g * dout[k]) <= 1e-6 * std::fabs(g * dout[k]));
      dot += double(dout[k]) * yy[k];
      mag += std::fabs(double(dout[k]) * yy[k]);
    }
    CHECK(std::fabs(dz[size_t(t)] - dot * g * (1 - g)) <= 1e-6 * mag * g * (1 - g) + 1e-12);
  }
}

TEST_CASE("moe_group_rows: the routing slots grouped by expert, stable, with their tokens and weights", "[moe_ops]") {
  const int64_t T = 23;
  const int K = 3, E = 7;
  std::vector<int32_t> idx(size_t(T * K));
  std::vector<float> w(size_t(T * K));
  for (int64_t s = 0; s < T * K; ++s) {
    idx[size_t(s)] = int32_t((s * 5 + s / 4) % (E - 1));  // expert 6 gets nothing
    w[size_t(s)] = 0.25f * float(s);
  }
  std::vector<int32_t> off(size_t(E + 1), -1), slots(idx.size(), -1), tok(idx.size(), -1);
  std::vector<float> wts(idx.size(), NAN);
  cpu_backend().moe_group_rows(idx.data(), w.data(), T, K, E, off.data(), slots.data(), tok.data(), wts.data());
  CHECK(off[0] == 0);
  CHECK(off[size_t(E)] == T * K);
  CHECK(off[size_t(E - 1)] == off[size_t(E)]);
  for (int e = 0; e < E; ++e) {
    std::vector<int32_t> want;  // the slots routed to e, in increasing order
    for (int64_t s = 0; s < T * K; ++s)
      if (idx[size_t(s)] == e) want.push_back(int32_t(s));
    REQUIRE(off[size_t(e + 1)] - off[size_t(e)] == int32_t(want.size()));
    for (size_t i = 0; i < want.size(); ++i) {
      const size_t p = size_t(off[size_t(e)]) + i;
      CHECK(slots[p] == want[i]);
      CHECK(tok[p] == want[i] / K);
      CHECK(wts[p] == w[size_t(want[i])]);
    }
  }
  idx[5] = E;  // an id past the experts
  CHECK_THROWS_WITH(cpu_backend().moe_group_rows(idx.data(), w.data(), T, K, E, off.data(), slots.data(), tok.data(), wts.data()),
                    Catch::Contains("out of range"));
}
