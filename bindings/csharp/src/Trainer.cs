// Trainer: SFT and GRPO steps that update the policy model's weights in place (the next
// Generate on the same Model uses the new policy), checkpoints. One thread at a time.
using System;
using System.Collections.Generic;

namespace LibReason {

/// <summary>Trains a policy model in place (reason_trainer).</summary>
/// <remarks>Used by one thread at a time; nothing may generate with, or score on, its policy while a
/// step runs. The trainer keeps its models alive until it is disposed.</remarks>
public sealed class Trainer : IDisposable {
  static Trainer() { Library.Init(); }  // the native preload first (see Library)

  readonly Native.Trainer native;
  readonly NativeHandle handle;

  /// <summary>Creates a trainer.</summary>
  /// <param name="policy">The model to train (loaded in f32).</param>
  /// <param name="config">A TrainerConfig in protobuf text format (sdk/proto/reason.proto), e.g.
  /// <c>optimizer { lr: 1e-3 } grpo { group_size: 4 }</c>; null or "" for the defaults.</param>
  /// <param name="reference">The frozen reference model for GRPO's KL term (needed only when grpo.beta &gt; 0).</param>
  /// <exception cref="ReasonException">A bad config (the message names the field or line and column).</exception>
  public Trainer(Model policy, string config = null, Model reference = null) {
    Check.NotNull(policy, "policy");
    var t = new Native.Trainer();
    try {
      using (policy.Handle.Use())
      using (reference == null ? default(NativeHandle.Lease) : reference.Handle.Use())
        Check.Ok(t.create(policy.native, reference == null ? null : reference.native, config ?? ""));
    } catch {
      t.Dispose();
      throw;
    }
    native = t;
    handle = new NativeHandle(t, NativeHandle.PointerOf(Native.Trainer.getCPtr(t)), "LibReason.Trainer",
                              policy.Handle, reference == null ? null : reference.Handle);
    Policy = policy;
  }

  /// <summary>The model this trainer updates.</summary>
  public Model Policy { get; }

  /// <summary>One SFT step: tokens[i] with masks[i] (1 = a completion token that carries loss, 0 = prompt).</summary>
  public StepMetrics SftStep(IEnumerable<IReadOnlyList<int>> tokens, IEnumerable<IReadOnlyList<byte>> masks) {
    using (handle.Use())
    using (Native.IntVectorVector t = Arrays.Nested(tokens, "tokens"))
    using (Native.ByteVectorVector m = Arrays.Nested(masks, "masks"))
    using (Native.MetricsResult r = native.sft_step(t, m))
      return Metrics(r);
  }

  /// <summary>One GRPO step (DeepSeekMath eq. 3) over groups of grpo.group_size consecutive samples
  /// that share a prompt. On error the weights are unchanged.</summary>
  public StepMetrics GrpoStep(IEnumerable<GrpoSample> batch) {
    Check.NotNull(batch, "batch");
    using (handle.Use())
    using (var v = new Native.GrpoSampleVector()) {
      foreach (GrpoSample s in batch) {
        using (Native.GrpoSample n = Check.NotNull(s, "batch").ToNative()) v.Add(n);
      }
      using (Native.MetricsResult r = native.grpo_step(v))
        return Metrics(r);
    }
  }

  static StepMetrics Metrics(Native.MetricsResult r) {
    Check.Ok(r.status);
    using (Native.StepMetrics m = r.metrics) return StepMetrics.FromNative(m);
  }

  /// <summary>Saves the policy as a Hugging Face directory plus optimizer state, atomically.</summary>
  public void Save(string dir) {
    Check.NotNull(dir, "dir");
    using (handle.Use()) Check.Ok(native.save(dir));
  }

  /// <summary>Restores optimizer state and step from a checkpoint whose weights the policy was loaded from.</summary>
  public void LoadState(string dir) {
    Check.NotNull(dir, "dir");
    using (handle.Use()) Check.Ok(native.load_state(dir));
  }

  /// <summary>Frees the trainer (and its hold on the models). Idempotent.</summary>
  public void Dispose() { handle.Dispose(); }
}

}
