package org.libreason;

import java.lang.ref.Reference;
import java.nio.file.Path;
import java.util.List;
import java.util.Objects;
import org.libreason.internal.CompletionsResult;
import org.libreason.internal.FloatsResult;
import org.libreason.internal.IntVector;
import org.libreason.internal.IntVectorVector;
import org.libreason.internal.StringVector;

/**
 * A loaded model (a Hugging Face directory: config.json, *.safetensors, tokenizer.json).
 *
 * <p>Thread-safe: many threads may generate, score and stream with one model at once. A {@link
 * Trainer} updates the model's weights in place; do not generate while one of its steps runs.
 * Close it when done (try-with-resources); closing while other threads still use it, or while
 * streams and trainers on it are open, is safe: the native model is freed after the last of them.
 */
public final class Model implements AutoCloseable {
  private final String path;
  private final org.libreason.internal.Model handle;
  private final String tokenizerError;
  private final Lifecycle life;
  private final Tokenizer tokenizer;  // null: the model has no tokenizer.json (tokenizerError says so)

  private Model(String path, org.libreason.internal.Model handle, org.libreason.internal.Tokenizer tok,
      String tokenizerError) {
    this.path = path;
    this.handle = handle;
    this.tokenizerError = tokenizerError;
    // The free action references the SWIG objects only, never this Model.
    this.life = new Lifecycle(this, "Model " + path, new NativeRef(() -> {
      if (tok != null) tok.delete();
      handle.delete();
    }));
    this.tokenizer = tok == null ? null : new Tokenizer(this, tok);
  }

  /** Loads a model with f32 compute. */
  public static Model load(Path dir) {
    return load(dir.toString(), "f32");
  }

  /** Loads a model with f32 compute. */
  public static Model load(String dir) {
    return load(dir, "f32");
  }

  /**
   * Loads a model.
   *
   * @param dtype the compute dtype: "f32" or "bf16" (training needs f32)
   * @throws ReasonException naming the file or field that is wrong (IO for a missing path)
   */
  public static Model load(String dir, String dtype) {
    return load(dir, dtype, "cpu", "auto");
  }

  /**
   * Loads a model on a device.
   *
   * @param dtype the compute dtype: "f32" or "bf16" (training needs f32)
   * @param device where the model runs: "cpu" or "cuda" (a ReasonException naming the reason when
   *     the library has no CUDA or no GPU is usable)
   * @param kvDType the KV cache's storage: "auto" (the compute dtype), "f32" or "bf16"
   * @throws ReasonException naming the file, field or option that is wrong
   */
  public static Model load(String dir, String dtype, String device, String kvDType) {
    return load(dir, dtype, device, kvDType, "none");
  }

  /**
   * Loads a model with its matmul weights held as {@code quantize} says.
   *
   * @param quantize "none" (every weight in the compute dtype, GGUF tensors dequantised; what the
   *     other overloads do), "stored" (a GGUF file's quantised tensors used as stored), "q8_0" or
   *     "q4_k" (quantised at load as llama.cpp's Q8_0 / Q4_K_M files). A quantised model runs
   *     inference only: a trainer refuses it.
   * @throws ReasonException naming the file, field or option that is wrong
   */
  public static Model load(String dir, String dtype, String device, String kvDType, String quantize) {
    return load(dir, dtype, device, kvDType, quantize, "");
  }

  /**
   * Loads a base model with a LoRA adapter run with it, unmerged.
   *
   * @param adapterDir a PEFT adapter directory (adapter_config.json + adapter_model.safetensors),
   *     or "" for none. A {@link Trainer} on the model trains the adapter only (the base is frozen;
   *     a quantised base trains as QLoRA) and saves it in PEFT's format. A {@code dir} that is
   *     itself an adapter directory loads as its base plus it.
   * @throws ReasonException naming the file, tensor or field that is wrong (a module the base
   *     lacks, shapes or ranks that differ, DoRA)
   */
  public static Model load(String dir, String dtype, String device, String kvDType, String quantize, String adapterDir) {
    Objects.requireNonNull(adapterDir, "adapterDir");
    Objects.requireNonNull(quantize, "quantize");
    Objects.requireNonNull(dir, "dir");
    Objects.requireNonNull(dtype, "dtype");
    Objects.requireNonNull(device, "device");
    Objects.requireNonNull(kvDType, "kvDType");
    NativeLibrary.ensureLoaded();
    org.libreason.internal.Model m = new org.libreason.internal.Model();
    org.libreason.internal.Tokenizer t = null;
    String tokError = null;
    try {
      Convert.check(m.load_adapter(dir, adapterDir, dtype, device, kvDType, quantize));
      t = new org.libreason.internal.Tokenizer();
      org.libreason.internal.Status s = m.tokenizer(t);
      try {
        if (s.getCode() != 0) {
          tokError = s.getMessage();
          t.delete();
          t = null;
        }
      } finally {
        s.delete();
      }
    } catch (RuntimeException | Error e) {
      if (t != null) t.delete();
      m.delete();
      throw e;
    }
    return new Model(dir, m, t, tokError);
  }

  /** The directory this model was loaded from. */
  public String path() {
    return path;
  }

  /**
   * Writes the model's LoRA adapter into dir in PEFT's format (adapter_config.json +
   * adapter_model.safetensors, each atomically). Not while a training step on the model runs.
   *
   * @throws ReasonException when the model has no adapter or writing fails
   */
  public void saveAdapter(String dir) {
    Objects.requireNonNull(dir, "dir");
    life.enter();
    try {
      Convert.check(handle.save_adapter(dir));
    } finally {
      life.exit();
      Reference.reachabilityFence(this);
    }
  }

  public ModelInfo info() {
    life.enter();
    try {
      org.libreason.internal.ModelInfo i = handle.info();
      try {
        return new ModelInfo(i.getArchitecture(), i.getVocab_size(), i.getHidden_size(), i.getNum_layers(),
            i.getNum_params(), i.getNum_experts(), i.getDevice(), i.getKv_dtype(), i.getQuantized_weights(),
            i.getAdapter_modules());
      } finally {
        i.delete();
      }
    } finally {
      life.exit();
      Reference.reachabilityFence(this);
    }
  }

  /** {@link #samplingDefaults(SamplingOptions)} over {@link SamplingOptions#defaults()}. */
  public SamplingOptions samplingDefaults() {
    return samplingDefaults(SamplingOptions.defaults());
  }

  /**
   * The sampling settings the model ships with (its generation_config.json, or a GGUF's
   * general.sampling.*) applied to {@code base}: the fields the model sets replace base's (do_sample
   * false is temperature 0), the others stay. Set explicit values afterwards with toBuilder().
   *
   * @throws ReasonException (FORMAT) naming the field when the file is malformed
   */
  public SamplingOptions samplingDefaults(SamplingOptions base) {
    SamplingOptions b = base == null ? SamplingOptions.defaults() : base;
    life.enter();
    org.libreason.internal.SamplingOptions o = null;
    try {
      o = b.toNative();
      org.libreason.internal.SamplingResult r = handle.sampling_defaults(o);
      try {
        Convert.check(r.getStatus());
        org.libreason.internal.SamplingOptions n = r.getOptions();
        return b.toBuilder().temperature(n.getTemperature()).topK(n.getTop_k()).topP(n.getTop_p()).minP(n.getMin_p())
            .repetitionPenalty(n.getRepetition_penalty()).maxNewTokens(n.getMax_new_tokens()).build();
      } finally {
        r.delete();
      }
    } finally {
      if (o != null) o.delete();
      life.exit();
      Reference.reachabilityFence(this);
    }
  }

  /**
   * The model's tokenizer. It belongs to the model (valid while the model is open; its close()
   * does nothing).
   *
   * @throws ReasonException when the model directory has no tokenizer.json
   */
  public Tokenizer tokenizer() {
    if (life.isClosed()) throw new IllegalStateException("Model " + path + " is closed");
    if (tokenizer == null) throw new ReasonException(ReasonStatus.INVALID_ARGUMENT, tokenizerError, null);
    return tokenizer;
  }

  /** Generates a completion of one prompt (encoded with the model's tokenizer and its special tokens). */
  public Completion generate(String prompt, SamplingOptions options) {
    return generate(List.of(prompt), options, null).get(0);
  }

  /**
   * Generates a completion of one prompt, giving each token to listener as it is produced (on
   * this thread). Returning false from the listener stops generation ({@link FinishReason#STOPPED}).
   */
  public Completion generate(String prompt, SamplingOptions options, TokenListener listener) {
    return generate(List.of(prompt), options, listener).get(0);
  }

  /** Generates completions of a batch of prompts (decoded together). */
  public List<Completion> generate(List<String> prompts, SamplingOptions options) {
    return generate(prompts, options, null);
  }

  /**
   * Generates completions of a batch of prompts; listener (may be null) receives every token of
   * every request ({@link Token#request()} tells which). Request i samples with seed + i.
   */
  public List<Completion> generate(List<String> prompts, SamplingOptions options, TokenListener listener) {
    Objects.requireNonNull(prompts, "prompts");
    SamplingOptions opts = options == null ? SamplingOptions.defaults() : options;
    life.enter();
    ListenerAdapter adapter = listener == null ? null : new ListenerAdapter(listener);
    org.libreason.internal.SamplingOptions o = null;
    StringVector ps = null;
    CompletionsResult r = null;
    try {
      o = opts.toNative();
      ps = Convert.strings(prompts);
      r = handle.generate(ps, o, adapter);
      if (adapter != null) adapter.rethrow();
      return Convert.completions(r);
    } finally {
      if (r != null) r.delete();
      if (ps != null) ps.delete();
      if (o != null) o.delete();
      if (adapter != null) adapter.delete();  // native code no longer calls it
      Reference.reachabilityFence(adapter);
      life.exit();
      Reference.reachabilityFence(this);
    }
  }

  /** Generates completions of prompts given as token ids (no special tokens are added). */
  public List<Completion> generateIds(List<int[]> prompts, SamplingOptions options, TokenListener listener) {
    Objects.requireNonNull(prompts, "prompts");
    SamplingOptions opts = options == null ? SamplingOptions.defaults() : options;
    life.enter();
    ListenerAdapter adapter = listener == null ? null : new ListenerAdapter(listener);
    org.libreason.internal.SamplingOptions o = null;
    IntVectorVector ps = null;
    CompletionsResult r = null;
    try {
      o = opts.toNative();
      ps = Convert.intLists(prompts);
      r = handle.generate_ids(ps, o, adapter);
      if (adapter != null) adapter.rethrow();
      return Convert.completions(r);
    } finally {
      if (r != null) r.delete();
      if (ps != null) ps.delete();
      if (o != null) o.delete();
      if (adapter != null) adapter.delete();
      Reference.reachabilityFence(adapter);
      life.exit();
      Reference.reachabilityFence(this);
    }
  }

  /**
   * Starts a pull-style stream of one completion: generation runs on a library thread and the
   * tokens are taken with the returned iterator. Close the stream (try-with-resources) to stop
   * generation early.
   */
  public TokenStream stream(String prompt, SamplingOptions options) {
    Objects.requireNonNull(prompt, "prompt");
    SamplingOptions opts = options == null ? SamplingOptions.defaults() : options;
    life.enter();
    try {
      return TokenStream.start(handle, life.ref(), prompt, opts);
    } finally {
      life.exit();
      Reference.reachabilityFence(this);
    }
  }

  /**
   * Teacher-forced logprobs: result[t] = log p(ids[t+1] | ids[0..t]) at temperature 1 (ids.length
   * - 1 values).
   */
  public float[] score(int[] ids) {
    Objects.requireNonNull(ids, "ids");
    life.enter();
    IntVector v = null;
    FloatsResult r = null;
    try {
      v = Convert.ints(ids);
      r = handle.score(v);
      Convert.check(r.getStatus());
      return Convert.floats(r.getValues());
    } finally {
      if (r != null) r.delete();
      if (v != null) v.delete();
      life.exit();
      Reference.reachabilityFence(this);
    }
  }

  public boolean isClosed() {
    return life.isClosed();
  }

  /** Closes the model (idempotent). Calls in flight finish first; later calls throw IllegalStateException. */
  @Override
  public void close() {
    life.close();
  }

  Lifecycle lifecycle() {
    return life;
  }

  org.libreason.internal.Model handle() {
    return handle;
  }

  @Override
  public String toString() {
    return "Model[" + path + (life.isClosed() ? ", closed" : "") + "]";
  }
}
