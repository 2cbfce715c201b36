#include "train/optimizer.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "reason/kernels/backend.h"

namespace reason {

float LrSchedule::at(int64_t step, float lr) const {
  // Exactly transformers' get_{constant,linear,cosine}_schedule_with_warmup lambdas.
  if (step < warmup_steps) return float(double(lr) * double(step) / double(std::max<int64_t>(1, warmup_steps)));
  if (kind == Kind::Constant) return lr;
  const double span = double(std::max<int64_t>(1, total_steps - warmup_steps));
  if (kind == Kind::Linear) return float(double(lr) * std::max(0.0, double(total_steps - step) / span));
  const double progress = double(step - warmup_steps) / span;
  return float(double(lr) * std::max(0.0, 0.5 * (1.0 + std::cos(M_PI * progress))));
}

bool no_weight_decay(const std::string& name) {
  auto ends = [&](const char* s) {
    const size_t n = std::char_traits<char>::length(s);
    return name.size() >= n && name.compare(name.size() - n, n, s) == 0;
  };
  return ends(".bias") || name.find("norm") != std::string::npos;
}

float AdamW::step(kernels::Backend& be, const std::vector<std::pair<std::string, Tensor>>& params, Gradients& grads,
                  float lr, const std::vector<std::string>& frozen, const std::vector<std::string>* elsewhere) {
  auto is_frozen = [&](const std::string& n) { return std::find(frozen.begin(), frozen.end(), n) != frozen.end(); };
  // Validate and measure before touching anything.
  double sq = 0;
  for (const auto& [name, p] : params) {
    if (is_frozen(name)) continue;
    const Tensor& g = grads.at(name);
    const float* gd = g.data<float>();
    const int64_t n = g.numel();
    const double s = be.sum_squares(gd, n);
    if (!std::isfinite(s)) {  // a NaN or infinity (squares of finite floats cannot overflow a double)
      const Tensor h = g.host();
      for (int64_t i = 0; i < n; ++i)
        if (!std::isfinite(h.data<float>()[i]))
          fail(ErrorCode::InvalidArgument, "gradient of '{}' is not finite (element {}); the step was not applied", name, i);
    }
    sq += s;
  }
  const float norm = float(std::sqrt(sq));
  float clip = 1.0f;
  if (cfg_.max_grad_norm > 0.0f) clip = std::min(1.0f, cfg_.max_grad_norm / (norm + 1e-6f));
  ++t_;
  const double bc1 = 1.0 - std::pow(double(cfg_.beta1), double(t_));
  const double bc2 = 1.0 - std::pow(double(cfg_.beta2), double(t_));
  const float step_size = float(lr / bc1);
  const float bc2_sqrt = float(std::sqrt(bc2));
  for (const auto& [name, p] : params) {
    if (is_frozen(name)) continue;
    if (elsewhere && std::find(elsewhere->begin(), elsewhere->end(), name) != elsewhere->end()) continue;
    if (p.dtype() != DType::F32) fail(ErrorCode::Unsupported, "AdamW: parameter '{}' is not f32", name);
    auto it = state_.find(name);
    if (it == state_.end())
      it = state_.emplace(name, std::make_pair(Tensor::zeros(be, DType::F32, p.shape()), Tensor::zeros(be, DType::F32, p.shape())))
               .first;
    float* w = const_cast<float*>(p.data<float>());
    const float* g = grads.at(name).data<float>();
    float* m = it->second.first.data<float>();
    float* v = it->second.second.data<float>();
    kernels::AdamWArgs a;
    a.w = w, a.m = m, a.v = v, a.g = g, a.n = p.numel();
    a.lr = lr, a.beta1 = cfg_.beta1, a.beta2 = cfg_.beta2, a.eps = cfg_.eps;
    a.decay = no_weight_decay(name) ? 0.0f : cfg_.weight_decay;
    a.clip = clip, a.step_size = step_size, a.bc2_sqrt = bc2_sqrt;
    be.adamw_update(a);
  }
  return norm;
}

}  // namespace reason
