package org.libreason;

/** The metrics of one optimizer step (SFT or GRPO; the GRPO-only fields are 0 for SFT). */
public record StepMetrics(long step, float loss, float gradNorm, float lr, long tokens, float kl, float clipLow,
    float clipHigh, float entropy, float rewardMean, float rewardStd) {

  static StepMetrics of(org.libreason.internal.StepMetrics m) {
    return new StepMetrics(m.getStep(), m.getLoss(), m.getGrad_norm(), m.getLr(), m.getTokens(), m.getKl(),
        m.getClip_low(), m.getClip_high(), m.getEntropy(), m.getReward_mean(), m.getReward_std());
  }
}
