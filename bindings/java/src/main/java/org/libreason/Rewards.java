package org.libreason;

import java.lang.ref.Reference;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import org.libreason.internal.FloatsResult;
import org.libreason.internal.IntVectorVector;
import org.libreason.internal.RewardsResult;
import org.libreason.internal.StringVector;
import org.libreason.internal.reason_native;

/** Rewards of completions: Java functions and the library's built-in rule-based rewards. */
public final class Rewards {
  private Rewards() {}

  /**
   * Rewards of a batch.
   *
   * @param rewards one per completion (a failed one is 0)
   * @param failed how many completions' rewards failed (the function threw or returned a
   *     non-finite value)
   * @param errors what the function threw (at most 16 kept)
   */
  public record Result(float[] rewards, long failed, List<Throwable> errors) {}

  /** The built-in rewards of the DeepSeek-R1 recipe. */
  public enum Builtin {
    /** 1 if the last \boxed{} answer equals arg (the gold answer), else 0. */
    MATH_ACCURACY(1),
    /** 1 if "&lt;think&gt;...&lt;/think&gt;" then a non-empty answer; arg "open" also accepts a completion that starts inside the think block. */
    FORMAT(2),
    /** The share of chain-of-thought words in language arg ("en", "zh", ...). */
    LANGUAGE(3);

    final int kind;

    Builtin(int kind) {
      this.kind = kind;
    }
  }

  /**
   * Decodes each completion with tok and scores it with fn, on this thread.
   *
   * @param answers the gold answer of each completion (same count), or null/empty for none
   */
  public static Result compute(Tokenizer tok, List<int[]> completions, List<String> answers, RewardFunction fn) {
    Objects.requireNonNull(tok, "tok");
    Objects.requireNonNull(completions, "completions");
    Objects.requireNonNull(fn, "fn");
    List<Throwable> errors = new ArrayList<>();
    RewardAdapter adapter = new RewardAdapter("compute", fn, e -> {
      synchronized (errors) {
        if (errors.size() < 16) errors.add(e.getCause());
      }
    });
    Lifecycle life = tok.lifecycle();
    life.enter();
    IntVectorVector cs = null;
    StringVector as = null;
    RewardsResult r = null;
    try {
      cs = Convert.intLists(completions);
      as = Convert.strings(answers == null ? List.of() : answers);
      r = reason_native.compute_rewards(tok.handle(), cs, as, adapter);
      Convert.check(r.getStatus());
      List<Throwable> copy;
      synchronized (errors) {
        copy = List.copyOf(errors);
      }
      return new Result(Convert.floats(r.getRewards()), r.getFailed(), copy);
    } finally {
      if (r != null) r.delete();
      if (as != null) as.delete();
      if (cs != null) cs.delete();
      adapter.dispose();
      Reference.reachabilityFence(adapter);
      life.exit();
      Reference.reachabilityFence(tok);
    }
  }

  /** A built-in reward of one completion. */
  public static float builtin(Builtin kind, String completion, String arg) {
    Objects.requireNonNull(kind, "kind");
    Objects.requireNonNull(completion, "completion");
    Objects.requireNonNull(arg, "arg");
    NativeLibrary.ensureLoaded();
    FloatsResult r = reason_native.builtin_reward(kind.kind, completion, arg);
    try {
      Convert.check(r.getStatus());
      return r.getValues().get(0);
    } finally {
      r.delete();
    }
  }

  /** 1 if the completion's last \boxed{} answer equals gold, else 0. */
  public static float mathAccuracy(String completion, String gold) {
    return builtin(Builtin.MATH_ACCURACY, completion, gold);
  }

  /** 1 if the completion is "&lt;think&gt;...&lt;/think&gt; answer" (open: it may start inside the think block). */
  public static float format(String completion, boolean open) {
    return builtin(Builtin.FORMAT, completion, open ? "open" : "");
  }
}
