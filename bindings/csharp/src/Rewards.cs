// Rewards written in C#: a Func<prompt, completion, answer, float> adapted to the RewardFunction
// director, and the library's built-in rule-based rewards.
using System;
using System.Collections.Generic;
using System.Linq;
using System.Runtime.CompilerServices;
using System.Threading;

namespace LibReason {

/// <summary>The built-in rule-based rewards of the DeepSeek-R1 recipe.</summary>
public enum BuiltinReward {
  /// <summary>1 if the last \boxed{} answer equals the gold answer (arg), else 0.</summary>
  MathAccuracy = 1,
  /// <summary>1 if "&lt;think&gt;...&lt;/think&gt;" then a non-empty answer; arg "open" also accepts a
  /// completion that starts inside the think block.</summary>
  Format = 2,
  /// <summary>Share of chain-of-thought words in language arg ("en", "zh", ...).</summary>
  Language = 3,
}

/// <summary>Rewards of a batch of completions.</summary>
public sealed class RewardBatch {
  internal RewardBatch(float[] rewards, long failed, Exception firstError) {
    Rewards = rewards;
    Failed = failed;
    FirstError = firstError;
  }
  /// <summary>One reward per completion (0 for a failed one).</summary>
  public float[] Rewards { get; }
  /// <summary>Completions whose reward threw or was not finite (scored 0).</summary>
  public long Failed { get; }
  /// <summary>The first exception a reward threw, or null.</summary>
  public Exception FirstError { get; }
}

/// <summary>Reward functions.</summary>
public static class Rewards {
  static Rewards() { Library.Init(); }  // the native preload first (see Library)

  /// <summary>Decodes each completion with <paramref name="tokenizer"/> and scores it with
  /// <paramref name="reward"/>(prompt "", completion text, answer) on this thread. A reward that
  /// throws or returns a non-finite value scores 0 and is counted in <see cref="RewardBatch.Failed"/>.</summary>
  /// <param name="answers">One gold answer per completion, or null (then answer is "").</param>
  public static RewardBatch Compute(Tokenizer tokenizer, IEnumerable<IReadOnlyList<int>> completions,
                                    IEnumerable<string> answers, Func<string, string, string, float> reward) {
    Check.NotNull(tokenizer, "tokenizer");
    Check.NotNull(reward, "reward");
    Library.EnsureLoaded();
    return ComputeNative(tokenizer, completions, answers, reward);
  }

  // Static entry points keep their native calls in a separate, never inlined method (see Library).
  [MethodImpl(MethodImplOptions.NoInlining)]
  static RewardBatch ComputeNative(Tokenizer tokenizer, IEnumerable<IReadOnlyList<int>> completions,
                                   IEnumerable<string> answers, Func<string, string, string, float> reward) {
    using (tokenizer.Handle.Use())
    using (Native.IntVectorVector cs = Arrays.Nested(completions, "completions"))
    using (Native.StringVector ans = answers == null ? new Native.StringVector() : Arrays.Strings(answers, "answers"))
    using (var fn = new RewardAdapter(reward)) {
      Native.RewardsResult r = Native.reason_native.compute_rewards(tokenizer.native, cs, ans, fn);
      GC.KeepAlive(fn);  // the director object must outlive every native call of it
      using (r) {
        Check.Ok(r.status);
        using (Native.FloatVector v = r.rewards) return new RewardBatch(Arrays.Of(v), r.failed, fn.FirstError);
      }
    }
  }

  /// <summary>A built-in reward of one completion (pure, thread-safe).</summary>
  public static float Builtin(BuiltinReward kind, string completion, string arg = "") {
    Check.NotNull(completion, "completion");
    Library.EnsureLoaded();
    return BuiltinNative(kind, completion, arg);
  }

  [MethodImpl(MethodImplOptions.NoInlining)]
  static float BuiltinNative(BuiltinReward kind, string completion, string arg) {
    using (Native.FloatsResult r = Native.reason_native.builtin_reward((int)kind, completion, arg ?? "")) {
      Check.Ok(r.status);
      using (Native.FloatVector v = r.values) return v[0];
    }
  }

  /// <summary>1 if the last \boxed{} answer of <paramref name="completion"/> equals <paramref name="gold"/>, else 0.</summary>
  public static float MathAccuracy(string completion, string gold) {
    return Builtin(BuiltinReward.MathAccuracy, completion, gold);
  }
}

// The reward director: a C# function behind the C++ RewardFunction. Called on the calling thread
// (Rewards.Compute) or on reward worker threads, several at once (Pipeline.Run). Exceptions never
// cross into native code: a throwing reward returns NaN, which the library scores 0 and counts.
internal sealed class RewardAdapter : Native.RewardFunction {
  readonly Func<string, string, string, float> fn;
  Exception firstError;
  long calls;

  internal RewardAdapter(Func<string, string, string, float> fn) { this.fn = fn; }

  internal Exception FirstError { get { return Volatile.Read(ref firstError); } }
  internal long Calls { get { return Interlocked.Read(ref calls); } }

  public override float score(string prompt, string completion, string answer) {
    Interlocked.Increment(ref calls);
    try {
      return fn(prompt ?? "", completion ?? "", answer ?? "");
    } catch (Exception e) {
      Interlocked.CompareExchange(ref firstError, e, null);
      return float.NaN;
    }
  }
}

}
