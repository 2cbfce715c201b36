package org.libreason;

import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Consumer;

/**
 * The SWIG director that forwards score() to a Java RewardFunction. Exceptions become NaN (a
 * failed reward, counted by the library). inFlight counts calls currently inside Java, so the
 * owner never deletes the director under a call that outlived its deadline.
 */
final class RewardAdapter extends org.libreason.internal.RewardFunction {
  private final String name;
  private final RewardFunction fn;
  private final Consumer<Throwable> onError;
  final AtomicInteger inFlight = new AtomicInteger();

  RewardAdapter(String name, RewardFunction fn, Consumer<Throwable> onError) {
    this.name = name;
    this.fn = fn;
    this.onError = onError;
  }

  @Override
  public float score(String prompt, String completion, String answer) {
    inFlight.incrementAndGet();
    try {
      return (float) fn.score(prompt, completion, answer);
    } catch (Throwable t) {
      try {
        if (onError != null) onError.accept(new RuntimeException("reward '" + name + "' threw " + t, t));
      } catch (Throwable ignored) {
        // the error hook itself failed: the reward still counts as failed
      }
      return Float.NaN;
    } finally {
      inFlight.decrementAndGet();
    }
  }

  /**
   * Frees the C++ director once native code can no longer call it. A call still running (one that
   * outlived its deadline in a pipeline) keeps it: ownership passes to C++ (a strong global
   * reference), a small deliberate leak instead of a use-after-free.
   */
  void dispose() {
    if (inFlight.get() == 0) {
      delete();
    } else {
      swigReleaseOwnership();
    }
  }
}
