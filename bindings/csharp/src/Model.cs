// Model: load, generate (batched; optional streaming callback through the TokenHandler
// director), pull-style streams, teacher-forced scoring. A model is immutable after load and may
// be used from many threads at once, except while a Trainer step updates it.
using System;
using System.Collections.Generic;
using System.Linq;
using System.Runtime.ExceptionServices;

namespace LibReason {

/// <summary>A loaded model (Hugging Face directory: config.json, *.safetensors, tokenizer.json).</summary>
/// <remarks>Thread-safe: many threads may generate with, or score on, one model at once. Nothing may
/// use it while a <see cref="Trainer"/> step runs on it (the step updates its weights in place).
/// Dispose it when done; a trainer, stream or tokenizer that still uses it keeps the native model
/// alive until they are disposed too.</remarks>
public sealed class Model : IDisposable {
  static Model() { Library.Init(); }  // the native preload first (see Library)

  internal readonly Native.Model native;
  readonly NativeHandle handle;
  readonly object tokenizerLock = new object();
  Tokenizer tokenizer;

  /// <summary>Loads a model directory.</summary>
  /// <param name="dir">A Hugging Face model directory.</param>
  /// <param name="dtype">Compute dtype: "f32" (needed for training) or "bf16".</param>
  /// <exception cref="ReasonException">The directory or a file in it is missing (Status.Io), malformed
  /// (Status.Format) or of an unsupported architecture (Status.Unsupported); the message names it.</exception>
  public Model(string dir, string dtype = "f32") : this(dir, dtype, "cpu", "auto") {}

  /// <summary>Loads a model directory on a device.</summary>
  /// <param name="dir">A Hugging Face model directory.</param>
  /// <param name="dtype">Compute dtype: "f32" (needed for training) or "bf16".</param>
  /// <param name="device">Where the model runs: "cpu" or "cuda" (Status.Unsupported, naming the reason,
  /// when the library has no CUDA or no GPU is usable).</param>
  /// <param name="kvDType">The KV cache's storage: "auto" (the compute dtype), "f32" or "bf16".</param>
  public Model(string dir, string dtype, string device, string kvDType) : this(dir, dtype, device, kvDType, "none") {}

  /// <summary>Loads a model with its matmul weights held as <paramref name="quantize"/> says.</summary>
  /// <param name="quantize">"none" (every weight in the compute dtype, GGUF tensors dequantised; what the
  /// other constructors do), "stored" (a GGUF file's quantised tensors used as stored), "q8_0" or "q4_k"
  /// (quantised at load as llama.cpp's Q8_0 / Q4_K_M files). A quantised model runs inference only: a
  /// trainer refuses it.</param>
  public Model(string dir, string dtype, string device, string kvDType, string quantize)
      : this(dir, dtype, device, kvDType, quantize, "") {}

  /// <summary>Loads a base model with a LoRA adapter run with it, unmerged.</summary>
  /// <param name="adapterDir">A PEFT adapter directory (adapter_config.json + adapter_model.safetensors),
  /// or "" / null for none. A <see cref="Trainer"/> on the model trains the adapter only (the base is
  /// frozen; a quantised base trains as QLoRA) and saves it in PEFT's format. A <paramref name="dir"/>
  /// that is itself an adapter directory loads as its base plus it.</param>
  /// <exception cref="ReasonException">The adapter does not fit the base (a module it lacks, shapes or
  /// ranks that differ) or uses what the engine does not run (DoRA); the message names it.</exception>
  public Model(string dir, string dtype, string device, string kvDType, string quantize, string adapterDir) {
    Check.NotNull(dir, "dir");
    Library.EnsureLoaded();
    var m = new Native.Model();
    try {
      Check.Ok(m.load_adapter(dir, adapterDir ?? "", dtype ?? "f32", device ?? "cpu", kvDType ?? "auto", quantize ?? "none"));
    } catch {
      m.Dispose();
      throw;
    }
    native = m;
    Path = dir;
    handle = new NativeHandle(m, NativeHandle.PointerOf(Native.Model.getCPtr(m)), "LibReason.Model");
  }

  /// <summary>Same as the constructor.</summary>
  public static Model Load(string dir, string dtype = "f32") { return new Model(dir, dtype); }

  /// <summary>Same as the four-argument constructor.</summary>
  public static Model Load(string dir, string dtype, string device, string kvDType) {
    return new Model(dir, dtype, device, kvDType);
  }

  /// <summary>Same as the five-argument constructor.</summary>
  public static Model Load(string dir, string dtype, string device, string kvDType, string quantize) {
    return new Model(dir, dtype, device, kvDType, quantize);
  }

  /// <summary>The directory the model was loaded from.</summary>
  public string Path { get; }

  internal NativeHandle Handle { get { return handle; } }

  /// <summary>Architecture and sizes.</summary>
  /// <summary>Writes the model's LoRA adapter into <paramref name="dir"/> in PEFT's format
  /// (adapter_config.json + adapter_model.safetensors, each atomically). Not while a training step on
  /// the model runs.</summary>
  /// <exception cref="ReasonException">The model has no adapter, or writing fails.</exception>
  public void SaveAdapter(string dir) {
    Check.NotNull(dir, "dir");
    using (handle.Use()) Check.Ok(native.save_adapter(dir));
  }

  /// <summary>Same as the six-argument constructor.</summary>
  public static Model Load(string dir, string dtype, string device, string kvDType, string quantize, string adapterDir) {
    return new Model(dir, dtype, device, kvDType, quantize, adapterDir);
  }

  public ModelInfo Info {
    get {
      using (handle.Use())
      using (Native.ModelInfo i = native.info())
        return new ModelInfo {
          Architecture = i.architecture, VocabSize = i.vocab_size, HiddenSize = i.hidden_size,
          NumLayers = i.num_layers, NumParams = i.num_params, NumExperts = i.num_experts,
          Device = i.device, KVDType = i.kv_dtype, QuantizedWeights = i.quantized_weights, AdapterModules = i.adapter_modules,
        };
    }
  }

  /// <summary>The sampling settings the model ships with (its generation_config.json, or a GGUF's
  /// general.sampling.*) applied to <paramref name="baseOptions"/> (default: new SamplingOptions()):
  /// the fields the model sets replace the base's (do_sample false is temperature 0), the others stay.</summary>
  /// <exception cref="ReasonException">FORMAT, naming the field, when the file is malformed.</exception>
  public SamplingOptions SamplingDefaults(SamplingOptions baseOptions = null) {
    SamplingOptions b = baseOptions ?? new SamplingOptions();
    using (handle.Use())
    using (Native.SamplingOptions o = b.ToNative())
    using (Native.SamplingResult r = native.sampling_defaults(o)) {
      Check.Ok(r.status);
      using (Native.SamplingOptions n = r.options) {
        SamplingOptions s = b.Clone();
        s.Temperature = n.temperature;
        s.TopK = n.top_k;
        s.TopP = n.top_p;
        s.MinP = n.min_p;
        s.RepetitionPenalty = n.repetition_penalty;
        s.MaxNewTokens = n.max_new_tokens;
        return s;
      }
    }
  }

  /// <summary>The model's own tokenizer (the same object each time; disposed with the model).</summary>
  /// <exception cref="ReasonException">The model directory has no tokenizer.json.</exception>
  public Tokenizer Tokenizer {
    get {
      lock (tokenizerLock) {
        if (tokenizer == null) {
          using (handle.Use()) tokenizer = Tokenizer.OfModel(native, handle);
        }
        return tokenizer;
      }
    }
  }

  /// <summary>Completes one text prompt (encoded with the model's tokenizer, with its special tokens).</summary>
  /// <param name="onToken">Optional streaming callback, called on this thread for each token; return
  /// false to stop. An exception it throws stops generation and is rethrown here.</param>
  public Completion Generate(string prompt, SamplingOptions options = null, TokenCallback onToken = null) {
    Check.NotNull(prompt, "prompt");
    return Generate(new[] { prompt }, options, onToken)[0];
  }

  /// <summary>Completes a batch of text prompts, decoded together (continuous batching).</summary>
  public IReadOnlyList<Completion> Generate(IEnumerable<string> prompts, SamplingOptions options = null,
                                           TokenCallback onToken = null) {
    using (Native.StringVector ps = Arrays.Strings(prompts, "prompts"))
      return Run(onToken, (opts, h) => native.generate(ps, opts, h), options);
  }

  /// <summary>Completes a batch of prompts given as token ids.</summary>
  public IReadOnlyList<Completion> GenerateIds(IEnumerable<IReadOnlyList<int>> prompts, SamplingOptions options = null,
                                              TokenCallback onToken = null) {
    using (Native.IntVectorVector ps = Arrays.Nested(prompts, "prompts"))
      return Run(onToken, (opts, h) => native.generate_ids(ps, opts, h), options);
  }

  IReadOnlyList<Completion> Run(TokenCallback onToken, Func<Native.SamplingOptions, Native.TokenHandler, Native.CompletionsResult> call,
                                SamplingOptions options) {
    using (handle.Use())
    using (Native.SamplingOptions opts = (options ?? new SamplingOptions()).ToNative())
    using (TokenAdapter adapter = onToken == null ? null : new TokenAdapter(onToken)) {
      // The adapter (a director: native code holds a pointer to its C++ half and calls its
      // delegate) stays reachable through this frame until the native call has returned.
      Native.CompletionsResult r = call(opts, adapter);
      GC.KeepAlive(adapter);
      using (r) {
        if (adapter != null && adapter.Error != null) adapter.Error.Throw();
        Check.Ok(r.status);
        using (Native.CompletionVector cs = r.completions) {
          var list = new List<Completion>(cs.Count);
          for (int i = 0; i < cs.Count; ++i) {
            using (Native.Completion c = cs[i]) list.Add(Completion.FromNative(c));
          }
          return list;
        }
      }
    }
  }

  /// <summary>Starts a pull-style stream of one completion: enumerate it for its tokens. Generation
  /// runs on a library thread; the stream must be used by one thread at a time.</summary>
  public TokenStream Stream(string prompt, SamplingOptions options = null) {
    Check.NotNull(prompt, "prompt");
    return new TokenStream(this, prompt, options ?? new SamplingOptions());
  }

  /// <summary>Teacher-forced logprobs: result[t] = log p(ids[t+1] | ids[0..t]) at temperature 1 (ids.Count - 1 values).</summary>
  public float[] Score(IReadOnlyList<int> ids) {
    Check.NotNull(ids, "ids");
    using (handle.Use())
    using (var v = new Native.IntVector(ids))
    using (Native.FloatsResult r = native.score(v)) {
      Check.Ok(r.status);
      using (var values = r.values) return Arrays.Of(values);
    }
  }

  /// <summary>Frees the model (and its tokenizer object). Idempotent.</summary>
  public void Dispose() {
    lock (tokenizerLock) {
      if (tokenizer != null) tokenizer.Dispose();
    }
    handle.Dispose();
  }

  // The streaming director: exceptions never cross into native code (they would unwind through
  // C++ frames); the first one stops generation and Generate rethrows it.
  sealed class TokenAdapter : Native.TokenHandler {
    readonly TokenCallback callback;
    internal ExceptionDispatchInfo Error;

    internal TokenAdapter(TokenCallback callback) { this.callback = callback; }

    public override bool on_token(long request, int token_id, float logprob, string text) {
      if (Error != null) return false;
      try {
        return callback((int)request, new Token(token_id, logprob, text ?? ""));
      } catch (Exception e) {
        Error = ExceptionDispatchInfo.Capture(e);
        return false;
      }
    }
  }
}

}
