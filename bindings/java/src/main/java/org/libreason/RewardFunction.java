package org.libreason;

/**
 * The reward of one completion, written in Java: used by {@link Rewards#compute} and, by name, by
 * pipelines ({@link Pipeline}, config {@code terms { callback: "NAME" }}).
 *
 * <p>An exception thrown here, or a non-finite result, marks the completion as a failed reward
 * (scored 0 and counted in the pipeline summary's reward_failures); it never crashes the
 * process. In a pipeline it is called from the library's reward worker threads, several at once:
 * it must be thread-safe.
 */
@FunctionalInterface
public interface RewardFunction {
  /**
   * @param prompt the prompt text ("" in {@link Rewards#compute})
   * @param completion the completion text
   * @param answer the gold answer, or ""
   */
  double score(String prompt, String completion, String answer) throws Exception;
}
