// Per-op timing of a forward pass (ForwardScratch::profile): the ops, their names, the
// accumulated times and the lap timer the layers call.
// Threads: a ForwardProfile and an OpLaps belong to one forward() at a time.
#pragma once
#include <array>
#include <chrono>
#include <cstdint>
#include <iterator>

namespace reason {

// The ops of a forward pass, in the order the dense decoder runs them (per layer: rmsnorm twice,
// residual_add twice). Embed covers everything before the first layer (token validation,
// scratch sizing, embedding lookup, cache growth); FinalNorm includes gathering the rows that
// need logits.
enum class ForwardOp : uint8_t {
  Embed, RmsNorm, QProj, KProj, VProj, Rope, KvStore, Attention, OProj, ResidualAdd,
  GateProj, UpProj, SiluMul, DownProj, FinalNorm, LmHead, QkNorm, Moe,
  Count
};

inline const char* forward_op_name(ForwardOp op) {
  static constexpr const char* names[] = {
      "embed", "rmsnorm", "q_proj", "k_proj", "v_proj", "rope", "kv_store", "attention", "o_proj", "residual_add",
      "gate_proj", "up_proj", "silu_mul", "down_proj", "final_norm", "lm_head", "qk_norm", "moe"};
  static_assert(std::size(names) == size_t(ForwardOp::Count));
  return names[size_t(op)];
}

// Wall time per op, summed over every forward() call made with it (see ForwardScratch::profile),
// and the weight bytes each matmul op streamed, so that a caller can derive GB/s.
struct ForwardProfile {
  static constexpr size_t kOps = size_t(ForwardOp::Count);
  std::array<double, kOps> seconds{};
  std::array<double, kOps> weight_bytes{};  // matmul ops only; 0 elsewhere
  std::array<int64_t, kOps> calls{};
  int64_t forwards = 0;                     // forward() calls profiled

  void add(ForwardOp op, double s, double bytes = 0) {
    seconds[size_t(op)] += s;
    weight_bytes[size_t(op)] += bytes;
    calls[size_t(op)] += 1;
  }
  double total_seconds() const {
    double t = 0;
    for (double x : seconds) t += x;
    return t;
  }
};

// Times the ops of one forward() into a ForwardProfile when there is one: lap(op) charges the
// time since the previous lap (or since construction) to op. With no profile each lap is one
// branch.
class OpLaps {
 public:
  explicit OpLaps(ForwardProfile* p) : p_(p) {
    if (!p_) return;
    ++p_->forwards;
    t_ = std::chrono::steady_clock::now();
  }
  // weight_bytes: the weight bytes a matmul op streamed (0 for other ops).
  void operator()(ForwardOp op, double weight_bytes = 0) {
    if (!p_) return;
    const auto now = std::chrono::steady_clock::now();
    p_->add(op, std::chrono::duration<double>(now - t_).count(), weight_bytes);
    t_ = now;
  }

 private:
  ForwardProfile* p_;
  std::chrono::steady_clock::time_point t_;
};

}  // namespace reason
