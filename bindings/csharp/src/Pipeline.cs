// Pipelines: the R1 recipe (sft, grpo, rejection_sampling, distill, eval stages) from a
// PipelineConfig text file, with rewards written in C# registered under the names the config's
// `terms { callback: "NAME" }` use, and tools under the names of a GRPO stage's
// `tools { callbacks: "NAME" }`.
using System;
using System.Collections.Generic;
using System.Runtime.CompilerServices;

namespace LibReason {

/// <summary>Runs pipeline configs (examples/pipelines/*.textproto).</summary>
public static class Pipeline {
  static Pipeline() { Library.Init(); }  // the native preload first (see Library)

  /// <summary>Runs (or resumes) the pipeline of <paramref name="configPath"/> into <paramref name="outDir"/>
  /// and returns OUT_DIR/summary.json's text. Blocks until the last stage is done.</summary>
  /// <param name="rewards">C# rewards by the name the config gives them: f(prompt, completion, answer).
  /// They are called from reward worker threads, several at once, so they must be thread-safe. A
  /// reward that throws, returns a non-finite value or passes its deadline scores 0 and is
  /// reported in the summary; the run goes on.</param>
  /// <param name="progress">Progress bars and stage reports on stderr.</param>
  /// <param name="tools">C# tools by the name a GRPO stage's <c>tools { callbacks: "NAME" }</c> gives
  /// them: f(argumentsJson) returns the text the model reads next (argumentsJson is the call's
  /// "arguments" as JSON text, or the call's text for a <c>raw: true</c> tool). They are called from
  /// several library threads at once, so they must be thread-safe. A tool that throws fails the call
  /// (the model reads "error: tool 'NAME' failed: MESSAGE"); one that passes the stage's
  /// tools.deadline_ms is abandoned and may still be running after Run returns.</param>
  /// <exception cref="ReasonException">A bad config (the message names its line and field), a
  /// missing file, or a failed stage.</exception>
  public static string Run(string configPath, string outDir,
                           IDictionary<string, Func<string, string, string, float>> rewards = null,
                           bool progress = false, IDictionary<string, Func<string, string>> tools = null) {
    Check.NotNull(configPath, "configPath");
    Check.NotNull(outDir, "outDir");
    Library.EnsureLoaded();
    return RunNative(configPath, outDir, rewards, progress, tools);
  }

  // Static entry points keep their native calls in a separate, never inlined method (see Library).
  [MethodImpl(MethodImplOptions.NoInlining)]
  static string RunNative(string configPath, string outDir, IDictionary<string, Func<string, string, string, float>> rewards,
                          bool progress, IDictionary<string, Func<string, string>> tools) {
    var adapters = new List<object>();
    using (var names = new Native.StringVector())
    using (var fns = new Native.RewardFunctionVector())
    using (var toolNames = new Native.StringVector())
    using (var toolFns = new Native.ToolFunctionVector()) {
      if (rewards != null) {
        foreach (KeyValuePair<string, Func<string, string, string, float>> kv in rewards) {
          var a = new RewardAdapter(Check.NotNull(kv.Value, "rewards[" + kv.Key + "]"));
          adapters.Add(a);
          names.Add(Check.NotNull(kv.Key, "rewards"));
          fns.Add(a);
        }
      }
      if (tools != null) {
        foreach (KeyValuePair<string, Func<string, string>> kv in tools) {
          var a = new ToolAdapter(Check.NotNull(kv.Value, "tools[" + kv.Key + "]"));
          adapters.Add(a);
          toolNames.Add(Check.NotNull(kv.Key, "tools"));
          toolFns.Add(a);
        }
      }
      // Worker threads call the adapters' delegates through native pointers for the whole run;
      // the list keeps them reachable until it returns. They are not disposed here: a call that
      // passed its deadline may still be running after the run returns, and the finalizer frees
      // each adapter only once nothing (that call's frame included) references it.
      using (Native.TextResult r = Native.reason_native.run_pipeline(configPath, outDir, progress, names, fns,
                                                                                 toolNames, toolFns)) {
        GC.KeepAlive(adapters);
        Check.Ok(r.status);
        return r.text;
      }
    }
  }
}

}
