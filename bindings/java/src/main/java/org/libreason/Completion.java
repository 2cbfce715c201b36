package org.libreason;

import java.util.Arrays;
import java.util.Objects;

/**
 * One finished request.
 *
 * @param tokenIds the generated tokens (stop strings included, EOS excluded)
 * @param logprobs the log-probability of each token under softmax(logits / T) (T = 1 when greedy)
 * @param text the decoded text
 * @param finishReason why it ended
 */
public record Completion(int[] tokenIds, float[] logprobs, String text, FinishReason finishReason) {
  public Completion {
    Objects.requireNonNull(tokenIds, "tokenIds");
    Objects.requireNonNull(logprobs, "logprobs");
    Objects.requireNonNull(text, "text");
    Objects.requireNonNull(finishReason, "finishReason");
  }

  @Override
  public boolean equals(Object o) {
    return o instanceof Completion c && Arrays.equals(tokenIds, c.tokenIds) && Arrays.equals(logprobs, c.logprobs)
        && text.equals(c.text) && finishReason == c.finishReason;
  }

  @Override
  public int hashCode() {
    return Objects.hash(Arrays.hashCode(tokenIds), Arrays.hashCode(logprobs), text, finishReason);
  }

  @Override
  public String toString() {
    return "Completion[" + tokenIds.length + " tokens, " + finishReason + ", text=" + text + "]";
  }
}
