package org.libreason;

import java.util.Arrays;
import java.util.Objects;

/**
 * One sampled completion of a GRPO group with its reward. Samples of the same prompt must be
 * adjacent in a batch, in groups of the trainer's {@code grpo.group_size}.
 *
 * @param prompt the prompt's token ids
 * @param completion the completion's token ids
 * @param reward its reward
 * @param oldLogprobs the logprobs the completion was sampled with (one per completion token), or
 *     null to let the trainer compute them
 * @param truncated true when the completion hit max_new_tokens
 */
public record GrpoSample(int[] prompt, int[] completion, float reward, float[] oldLogprobs, boolean truncated) {
  public GrpoSample {
    Objects.requireNonNull(prompt, "prompt");
    Objects.requireNonNull(completion, "completion");
    if (oldLogprobs != null && oldLogprobs.length != completion.length) {
      throw new IllegalArgumentException("oldLogprobs has " + oldLogprobs.length + " values for "
          + completion.length + " completion tokens");
    }
  }

  public GrpoSample(int[] prompt, int[] completion, float reward) {
    this(prompt, completion, reward, null, false);
  }

  /** A sample of a generated completion (truncated when it ended by length). */
  public static GrpoSample of(int[] prompt, Completion c, float reward) {
    return new GrpoSample(prompt, c.tokenIds(), reward, null, c.finishReason() == FinishReason.LENGTH);
  }

  @Override
  public boolean equals(Object o) {
    return o instanceof GrpoSample s && Arrays.equals(prompt, s.prompt) && Arrays.equals(completion, s.completion)
        && Float.compare(reward, s.reward) == 0 && Arrays.equals(oldLogprobs, s.oldLogprobs)
        && truncated == s.truncated;
  }

  @Override
  public int hashCode() {
    return Objects.hash(Arrays.hashCode(prompt), Arrays.hashCode(completion), reward, Arrays.hashCode(oldLogprobs),
        truncated);
  }

  @Override
  public String toString() {
    return "GrpoSample[prompt=" + prompt.length + " tokens, completion=" + completion.length + " tokens, reward="
        + reward + (truncated ? ", truncated" : "") + "]";
  }

  org.libreason.internal.GrpoSample toNative() {
    org.libreason.internal.GrpoSample s = new org.libreason.internal.GrpoSample();
    org.libreason.internal.IntVector p = Convert.ints(prompt);
    org.libreason.internal.IntVector c = Convert.ints(completion);
    try {
      s.setPrompt(p);
      s.setCompletion(c);
      if (oldLogprobs != null) {
        org.libreason.internal.FloatVector lp = Convert.floats(oldLogprobs);
        try {
          s.setOld_logprobs(lp);
        } finally {
          lp.delete();
        }
      }
      s.setReward(reward);
      s.setTruncated(truncated);
    } finally {
      p.delete();
      c.delete();
    }
    return s;
  }
}
