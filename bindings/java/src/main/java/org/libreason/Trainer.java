package org.libreason;

import java.lang.ref.Reference;
import java.nio.file.Path;
import java.util.List;
import java.util.Objects;
import org.libreason.internal.ByteVectorVector;
import org.libreason.internal.GrpoSampleVector;
import org.libreason.internal.IntVectorVector;
import org.libreason.internal.MetricsResult;

/**
 * Trains a policy model in place: after a step, generation with the same {@link Model} uses the
 * new weights (no reload). The trainer keeps its models' native memory alive until it is closed.
 * Its methods are synchronized (a trainer is used by one thread at a time); do not generate with
 * the policy while a step runs.
 *
 * <pre>{@code
 * try (Trainer t = Trainer.create(policy, "optimizer { lr: 1e-3 } grpo { group_size: 4 }")) {
 *   StepMetrics m = t.grpoStep(samples);
 *   t.save(Path.of("ckpt"));
 * }
 * }</pre>
 */
public final class Trainer implements AutoCloseable {
  private final org.libreason.internal.Trainer handle;
  private final Lifecycle life;

  private Trainer(org.libreason.internal.Trainer handle, NativeRef policy, NativeRef reference) {
    this.handle = handle;
    this.life = new Lifecycle(this, "Trainer", new NativeRef(() -> {
      handle.delete();
      policy.release();
      if (reference != null) reference.release();
    }));
  }

  /** A trainer of policy with a TrainerConfig in protobuf text format (sdk/proto/reason.proto). */
  public static Trainer create(Model policy, String config) {
    return create(policy, null, config);
  }

  /**
   * A trainer of policy; reference (may be null) is the frozen model of the KL term (needed when
   * grpo.beta &gt; 0).
   */
  public static Trainer create(Model policy, Model reference, String config) {
    Objects.requireNonNull(policy, "policy");
    Objects.requireNonNull(config, "config");
    NativeRef p = retain(policy);
    NativeRef r = null;
    org.libreason.internal.Trainer t = new org.libreason.internal.Trainer();
    try {
      if (reference != null) r = retain(reference);
      Convert.check(t.create(policy.handle(), reference == null ? null : reference.handle(), config));
    } catch (RuntimeException | Error e) {
      t.delete();
      p.release();
      if (r != null) r.release();
      throw e;
    } finally {
      Reference.reachabilityFence(policy);
      Reference.reachabilityFence(reference);
    }
    return new Trainer(t, p, r);
  }

  private static NativeRef retain(Model m) {
    if (m.isClosed() || !m.lifecycle().ref().retain()) throw new IllegalStateException(m + " is closed");
    return m.lifecycle().ref();
  }

  /**
   * One SFT step: tokens.get(i) is an example, lossMask.get(i) marks (true) the tokens that carry
   * loss (the completion), same length.
   */
  public synchronized StepMetrics sftStep(List<int[]> tokens, List<boolean[]> lossMask) {
    Objects.requireNonNull(tokens, "tokens");
    Objects.requireNonNull(lossMask, "lossMask");
    life.enter();
    IntVectorVector t = null;
    ByteVectorVector m = null;
    MetricsResult r = null;
    try {
      t = Convert.intLists(tokens);
      m = Convert.masks(lossMask);
      r = handle.sft_step(t, m);
      Convert.check(r.getStatus());
      return StepMetrics.of(r.getMetrics());
    } finally {
      if (r != null) r.delete();
      if (m != null) m.delete();
      if (t != null) t.delete();
      life.exit();
      Reference.reachabilityFence(this);
    }
  }

  /** One GRPO step on a batch of groups (see {@link GrpoSample}). */
  public synchronized StepMetrics grpoStep(List<GrpoSample> batch) {
    Objects.requireNonNull(batch, "batch");
    life.enter();
    GrpoSampleVector v = new GrpoSampleVector();
    MetricsResult r = null;
    try {
      v.reserve(batch.size());
      for (GrpoSample s : batch) {
        org.libreason.internal.GrpoSample n = s.toNative();
        try {
          v.add(n);  // copies
        } finally {
          n.delete();
        }
      }
      r = handle.grpo_step(v);
      Convert.check(r.getStatus());
      return StepMetrics.of(r.getMetrics());
    } finally {
      if (r != null) r.delete();
      v.delete();
      life.exit();
      Reference.reachabilityFence(this);
    }
  }

  /** Writes a checkpoint (weights, optimizer state, trainer state) into dir. */
  public synchronized void save(Path dir) {
    save(dir.toString());
  }

  public synchronized void save(String dir) {
    Objects.requireNonNull(dir, "dir");
    life.enter();
    try {
      Convert.check(handle.save(dir));
    } finally {
      life.exit();
      Reference.reachabilityFence(this);
    }
  }

  /** Restores the optimizer and trainer state of a checkpoint (the weights are loaded with the model). */
  public synchronized void loadState(Path dir) {
    loadState(dir.toString());
  }

  public synchronized void loadState(String dir) {
    Objects.requireNonNull(dir, "dir");
    life.enter();
    try {
      Convert.check(handle.load_state(dir));
    } finally {
      life.exit();
      Reference.reachabilityFence(this);
    }
  }

  public boolean isClosed() {
    return life.isClosed();
  }

  @Override
  public void close() {
    life.close();
  }
}
