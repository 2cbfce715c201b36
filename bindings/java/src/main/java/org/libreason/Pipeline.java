package org.libreason;

import java.lang.ref.Reference;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import org.libreason.internal.RewardFunctionVector;
import org.libreason.internal.StringVector;
import org.libreason.internal.TextResult;
import org.libreason.internal.ToolFunctionVector;
import org.libreason.internal.reason_native;

/**
 * An R1 pipeline (sft, grpo, rejection_sampling, distill, eval stages) described by a
 * PipelineConfig in protobuf text format, with rewards written in Java that the config names as
 * {@code terms { callback: "NAME" }}.
 *
 * <pre>{@code
 * Pipeline.Result r = Pipeline.fromConfig(Path.of("r1-zero.textproto"))
 *     .reward("judge", (prompt, completion, answer) -> completion.contains(answer) ? 1 : 0)
 *     .run(Path.of("runs/r1-zero"));
 * }</pre>
 *
 * <p>Reward functions are called from the library's reward worker threads, several at once: they
 * must be thread-safe. An exception in one, or a non-finite value, scores that completion 0 and
 * is counted in the summary's reward_failures; the run goes on.
 *
 * <p>Tools ({@link #tool}) serve a GRPO stage's {@code tools { callbacks: "NAME" }}: completions
 * call them mid-rollout and read their answers (see {@link ToolFunction}).
 */
public final class Pipeline {
  private final String config;
  private final Map<String, RewardFunction> rewards = new LinkedHashMap<>();
  private final Map<String, ToolFunction> tools = new LinkedHashMap<>();
  private boolean progress = false;

  private Pipeline(String config) {
    this.config = config;
  }

  public static Pipeline fromConfig(Path config) {
    return fromConfig(config.toString());
  }

  /** The pipeline of a config file (text-format PipelineConfig). */
  public static Pipeline fromConfig(String config) {
    return new Pipeline(Objects.requireNonNull(config, "config"));
  }

  /** Serves the config's {@code callback: "name"} reward term with fn (thread-safe). */
  public Pipeline reward(String name, RewardFunction fn) {
    Objects.requireNonNull(name, "name");
    Objects.requireNonNull(fn, "fn");
    rewards.put(name, fn);
    return this;
  }

  /** Serves the config's {@code tools { callbacks: "name" }} with fn (thread-safe). */
  public Pipeline tool(String name, ToolFunction fn) {
    Objects.requireNonNull(name, "name");
    Objects.requireNonNull(fn, "fn");
    tools.put(name, fn);
    return this;
  }

  /** Progress bars and stage reports on stderr (off by default). */
  public Pipeline progress(boolean on) {
    progress = on;
    return this;
  }

  /**
   * The outcome of a run.
   *
   * @param summaryJson OUT_DIR/summary.json's text
   * @param rewardErrors what the Java reward functions threw (at most 64 kept)
   * @param toolErrors what the Java tools threw (at most 64 kept; the model read each as an
   *     error)
   */
  public record Result(String summaryJson, List<Throwable> rewardErrors, List<Throwable> toolErrors) {}

  public Result run(Path outDir) {
    return run(outDir.toString());
  }

  /**
   * Runs (or resumes) the pipeline into outDir, blocking until its last stage is done. Complete
   * stages of an earlier run there are skipped.
   *
   * @throws ReasonException a bad config (the message names the line and field), a missing
   *     dataset or model, a failed stage
   */
  public Result run(String outDir) {
    Objects.requireNonNull(outDir, "outDir");
    NativeLibrary.ensureLoaded();
    List<Throwable> errors = new ArrayList<>();
    List<Throwable> toolErrors = new ArrayList<>();
    // The directors live in this frame (strongly reachable) for the whole native call.
    List<RewardAdapter> adapters = new ArrayList<>();
    List<ToolAdapter> toolAdapters = new ArrayList<>();
    StringVector names = new StringVector();
    RewardFunctionVector fns = new RewardFunctionVector();
    StringVector toolNames = new StringVector();
    ToolFunctionVector toolFns = new ToolFunctionVector();
    TextResult r = null;
    try {
      for (Map.Entry<String, RewardFunction> e : rewards.entrySet()) {
        RewardAdapter a = new RewardAdapter(e.getKey(), e.getValue(), t -> keep(errors, t.getCause()));
        adapters.add(a);
        names.add(e.getKey());
        fns.add(a);
      }
      for (Map.Entry<String, ToolFunction> e : tools.entrySet()) {
        ToolAdapter a = new ToolAdapter(e.getKey(), e.getValue(), t -> keep(toolErrors, t.getCause()));
        toolAdapters.add(a);
        toolNames.add(e.getKey());
        toolFns.add(a);
      }
      r = reason_native.run_pipeline(config, outDir, progress, names, fns, toolNames, toolFns);
      Convert.check(r.getStatus());
      return new Result(r.getText(), copyOf(errors), copyOf(toolErrors));
    } finally {
      if (r != null) r.delete();
      fns.delete();
      names.delete();
      toolFns.delete();
      toolNames.delete();
      for (RewardAdapter a : adapters) a.dispose();
      for (ToolAdapter a : toolAdapters) a.dispose();
      Reference.reachabilityFence(adapters);
      Reference.reachabilityFence(toolAdapters);
    }
  }

  private static void keep(List<Throwable> errors, Throwable t) {
    synchronized (errors) {
      if (errors.size() < 64) errors.add(t);
    }
  }

  private static List<Throwable> copyOf(List<Throwable> errors) {
    synchronized (errors) {
      return List.copyOf(errors);
    }
  }
}
