// Plain managed values: sampling options, completions, tokens, metrics, GRPO samples. They copy
// data out of (or into) the SWIG structs so that no native memory outlives a call.
using System;
using System.Collections.Generic;
using System.Linq;

namespace LibReason {

/// <summary>Why a completion ended.</summary>
public enum FinishReason {
  /// <summary>max_new_tokens reached: the completion is truncated.</summary>
  Length = 0,
  /// <summary>EOS, a stop token or a stop string.</summary>
  Stop = 1,
  /// <summary>The token callback returned false (or threw), or the stream was disposed early.</summary>
  Stopped = 2,
}

/// <summary>One generated token.</summary>
public struct Token {
  public Token(int id, float logprob, string text) {
    Id = id;
    Logprob = logprob;
    Text = text;
  }
  /// <summary>The token id.</summary>
  public int Id { get; }
  /// <summary>Its logprob under softmax(logits / temperature) (temperature 1 when greedy).</summary>
  public float Logprob { get; }
  /// <summary>The newly completed UTF-8 text of this token ("" while a character is incomplete).</summary>
  public string Text { get; }
  public override string ToString() { return Id + ":" + Text; }
}

/// <summary>Streaming callback of <see cref="Model.Generate(string, SamplingOptions, TokenCallback)"/>: runs on the
/// generating thread for each token of request <paramref name="request"/> (its index in the batch).
/// Return false to stop that request (its finish reason becomes <see cref="FinishReason.Stopped"/>).
/// An exception stops generation and is rethrown by Generate.</summary>
public delegate bool TokenCallback(int request, Token token);

/// <summary>Sampling settings (reason_sampling_options). Defaults: temperature 1, no top-k/top-p/min-p
/// filtering, 256 new tokens.</summary>
public sealed class SamplingOptions {
  /// <summary>0 = greedy.</summary>
  public float Temperature { get; set; } = 1.0f;
  public int TopK { get; set; } = 0;
  public float TopP { get; set; } = 1.0f;
  public float MinP { get; set; } = 0.0f;
  public float RepetitionPenalty { get; set; } = 1.0f;
  public int MaxNewTokens { get; set; } = 256;
  /// <summary>Request i of a batch uses Seed + i.</summary>
  public long Seed { get; set; } = 0;
  /// <summary>Extra stop tokens (EOS always stops unless IgnoreEos).</summary>
  public IList<int> StopTokenIds { get; set; } = new List<int>();
  /// <summary>Generation stops when the text ends with one of these.</summary>
  public IList<string> StopStrings { get; set; } = new List<string>();
  public bool IgnoreEos { get; set; }

  /// <summary>A copy (the stop lists copied too).</summary>
  public SamplingOptions Clone() {
    var c = (SamplingOptions)MemberwiseClone();
    c.StopTokenIds = new List<int>(StopTokenIds ?? new List<int>());
    c.StopStrings = new List<string>(StopStrings ?? new List<string>());
    return c;
  }

  /// <summary>Greedy decoding of up to <paramref name="maxNewTokens"/> tokens.</summary>
  public static SamplingOptions Greedy(int maxNewTokens = 256) {
    return new SamplingOptions { Temperature = 0, MaxNewTokens = maxNewTokens };
  }

  /// <summary>DeepSeek-R1's settings: temperature 0.6, top-p 0.95.</summary>
  public static SamplingOptions R1() {
    return new SamplingOptions { Temperature = 0.6f, TopP = 0.95f };
  }

  internal Native.SamplingOptions ToNative() {
    var o = new Native.SamplingOptions();
    o.temperature = Temperature;
    o.top_k = TopK;
    o.top_p = TopP;
    o.min_p = MinP;
    o.repetition_penalty = RepetitionPenalty;
    o.max_new_tokens = MaxNewTokens;
    o.seed = Seed;
    if (StopTokenIds != null && StopTokenIds.Count > 0)
      using (var v = new Native.IntVector(StopTokenIds)) o.stop_token_ids = v;
    if (StopStrings != null && StopStrings.Count > 0)
      using (var v = new Native.StringVector(StopStrings)) o.stop_strings = v;
    o.ignore_eos = IgnoreEos;
    return o;
  }
}

/// <summary>One finished request of a generation.</summary>
public sealed class Completion {
  public Completion(IReadOnlyList<int> tokenIds, IReadOnlyList<float> logprobs, string text, FinishReason finishReason) {
    TokenIds = tokenIds;
    Logprobs = logprobs;
    Text = text;
    FinishReason = finishReason;
  }
  /// <summary>Generated tokens (stop strings included, EOS excluded).</summary>
  public IReadOnlyList<int> TokenIds { get; }
  /// <summary>Logprob of each token under softmax(logits / temperature) (temperature 1 when greedy).</summary>
  public IReadOnlyList<float> Logprobs { get; }
  /// <summary>The decoded text.</summary>
  public string Text { get; }
  public FinishReason FinishReason { get; }
  public override string ToString() { return Text; }

  internal static Completion FromNative(Native.Completion c) {
    using (var ids = c.token_ids)
    using (var lps = c.logprobs)
      return new Completion(Arrays.Of(ids), Arrays.Of(lps), c.text, (FinishReason)c.finish_reason);
  }
}

/// <summary>What a model is (reason_model_info).</summary>
public sealed class ModelInfo {
  public string Architecture { get; internal set; }
  public long VocabSize { get; internal set; }
  public long HiddenSize { get; internal set; }
  public long NumLayers { get; internal set; }
  public long NumParams { get; internal set; }
  /// <summary>0 for a dense model.</summary>
  public long NumExperts { get; internal set; }
  /// <summary>Where the model runs: "cpu" or "cuda".</summary>
  public string Device { get; internal set; }
  /// <summary>The KV cache's storage: "f32" or "bf16".</summary>
  public string KVDType { get; internal set; }
  /// <summary>ggml's name of the first quantised weight's block type ("Q4_K", "Q6_K", "Q8_0", ...), or ""
  /// when no weight is quantised.</summary>
  public string QuantizedWeights { get; internal set; }
  /// <summary>The linear layers carrying a LoRA adapter (0: none).</summary>
  public long AdapterModules { get; internal set; }
  public override string ToString() {
    return Architecture + " (" + NumLayers + " layers, hidden " + HiddenSize + ", vocab " + VocabSize + ", " +
           NumParams + " parameters" + (NumExperts > 0 ? ", " + NumExperts + " experts" : "") + ")";
  }
}

/// <summary>Metrics of one training step.</summary>
public sealed class StepMetrics {
  /// <summary>Optimizer steps taken so far.</summary>
  public long Step { get; internal set; }
  public float Loss { get; internal set; }
  /// <summary>Global gradient norm before clipping.</summary>
  public float GradNorm { get; internal set; }
  public float LearningRate { get; internal set; }
  /// <summary>Tokens that carried loss.</summary>
  public long Tokens { get; internal set; }
  public float Kl { get; internal set; }
  public float ClipLow { get; internal set; }
  public float ClipHigh { get; internal set; }
  public float Entropy { get; internal set; }
  public float RewardMean { get; internal set; }
  public float RewardStd { get; internal set; }

  internal static StepMetrics FromNative(Native.StepMetrics m) {
    return new StepMetrics {
      Step = m.step, Loss = m.loss, GradNorm = m.grad_norm, LearningRate = m.lr, Tokens = m.tokens, Kl = m.kl,
      ClipLow = m.clip_low, ClipHigh = m.clip_high, Entropy = m.entropy, RewardMean = m.reward_mean,
      RewardStd = m.reward_std,
    };
  }

  public override string ToString() {
    return "step " + Step + " loss " + Loss.ToString("G4") + " grad_norm " + GradNorm.ToString("G4") + " reward " +
           RewardMean.ToString("G4") + " +- " + RewardStd.ToString("G4");
  }
}

/// <summary>One sample of a GRPO batch: a prompt, one sampled completion and its reward. Groups of
/// grpo.group_size consecutive samples share a prompt.</summary>
public sealed class GrpoSample {
  public GrpoSample(IReadOnlyList<int> prompt, IReadOnlyList<int> completion, float reward,
                    IReadOnlyList<float> oldLogprobs = null, bool truncated = false) {
    Prompt = Check.NotNull(prompt, "prompt");
    Completion = Check.NotNull(completion, "completion");
    Reward = reward;
    OldLogprobs = oldLogprobs;
    Truncated = truncated;
  }

  /// <summary>A sample from a generated completion: its tokens, its sampling logprobs as the old
  /// policy's, truncated when it hit the length limit.</summary>
  public static GrpoSample FromCompletion(IReadOnlyList<int> prompt, Completion completion, float reward) {
    Check.NotNull(completion, "completion");
    return new GrpoSample(prompt, completion.TokenIds, reward, completion.Logprobs,
                          completion.FinishReason == FinishReason.Length);
  }

  public IReadOnlyList<int> Prompt { get; }
  public IReadOnlyList<int> Completion { get; }
  public float Reward { get; }
  /// <summary>Logprobs from sampling (one per completion token), or null: the current policy's.</summary>
  public IReadOnlyList<float> OldLogprobs { get; }
  /// <summary>The completion hit the length limit (no EOS).</summary>
  public bool Truncated { get; }

  internal Native.GrpoSample ToNative() {
    var s = new Native.GrpoSample();
    using (var p = new Native.IntVector(Prompt)) s.prompt = p;
    using (var c = new Native.IntVector(Completion)) s.completion = c;
    s.reward = Reward;
    if (OldLogprobs != null)
      using (var l = new Native.FloatVector(OldLogprobs)) s.old_logprobs = l;
    s.truncated = Truncated;
    return s;
  }
}

internal static class Arrays {
  internal static int[] Of(Native.IntVector v) {
    var a = new int[v.Count];
    v.CopyTo(a);
    return a;
  }
  internal static float[] Of(Native.FloatVector v) {
    var a = new float[v.Count];
    v.CopyTo(a);
    return a;
  }
  internal static Native.IntVectorVector Nested(IEnumerable<IReadOnlyList<int>> lists, string name) {
    var vv = new Native.IntVectorVector();
    foreach (IReadOnlyList<int> l in Check.NotNull(lists, name)) {
      using (var v = new Native.IntVector(Check.NotNull(l, name))) vv.Add(v);
    }
    return vv;
  }
  internal static Native.ByteVectorVector Nested(IEnumerable<IReadOnlyList<byte>> lists, string name) {
    var vv = new Native.ByteVectorVector();
    foreach (IReadOnlyList<byte> l in Check.NotNull(lists, name)) {
      using (var v = new Native.ByteVector(Check.NotNull(l, name))) vv.Add(v);
    }
    return vv;
  }
  internal static Native.StringVector Strings(IEnumerable<string> strings, string name) {
    var v = new Native.StringVector();
    foreach (string s in Check.NotNull(strings, name)) v.Add(Check.NotNull(s, name));
    return v;
  }
}

}
