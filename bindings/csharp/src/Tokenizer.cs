// Tokenizer: loaded from tokenizer.json (owned) or a model's own (borrowed from the model, which
// it keeps alive). Thread-safe: one tokenizer may be used from many threads at once.
using System;
using System.Collections.Generic;
using System.Runtime.CompilerServices;

namespace LibReason {

/// <summary>A tokenizer (Hugging Face tokenizer.json). Thread-safe. Dispose it (or let the finalizer).</summary>
public sealed class Tokenizer : IDisposable {
  static Tokenizer() { Library.Init(); }  // the native preload first (see Library)

  internal readonly Native.Tokenizer native;
  readonly NativeHandle handle;

  Tokenizer(Native.Tokenizer native, NativeHandle borrowedFrom) {
    this.native = native;
    handle = new NativeHandle(native, NativeHandle.PointerOf(Native.Tokenizer.getCPtr(native)), "LibReason.Tokenizer",
                              borrowedFrom);
  }

  /// <summary>Loads a tokenizer from a directory holding tokenizer.json, or from the file itself.</summary>
  /// <exception cref="ReasonException">The file is missing (Status.Io) or malformed (Status.Format).</exception>
  public static Tokenizer Load(string path) {
    Check.NotNull(path, "path");
    Library.EnsureLoaded();
    return LoadNative(path);
  }

  // Static entry points keep their native calls in a separate, never inlined method (see Library).
  [MethodImpl(MethodImplOptions.NoInlining)]
  static Tokenizer LoadNative(string path) {
    var t = new Native.Tokenizer();
    try {
      Check.Ok(t.load(path));
    } catch {
      t.Dispose();
      throw;
    }
    return new Tokenizer(t, null);
  }

  // The tokenizer of `model` (borrowed: this object keeps the model's native handle alive).
  internal static Tokenizer OfModel(Native.Model model, NativeHandle modelHandle) {
    var t = new Native.Tokenizer();
    try {
      Check.Ok(model.tokenizer(t));
    } catch {
      t.Dispose();
      throw;
    }
    return new Tokenizer(t, modelHandle);
  }

  /// <summary>Token ids of <paramref name="text"/>; with <paramref name="addSpecialTokens"/>, the
  /// tokenizer's BOS etc. as a model's prompt has them.</summary>
  public int[] Encode(string text, bool addSpecialTokens = false) {
    Check.NotNull(text, "text");
    using (handle.Use())
    using (Native.IdsResult r = native.encode(text, addSpecialTokens)) {
      Check.Ok(r.status);
      using (var ids = r.ids) return Arrays.Of(ids);
    }
  }

  /// <summary>The text of token ids.</summary>
  public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = false) {
    Check.NotNull(ids, "ids");
    using (handle.Use())
    using (var v = new Native.IntVector(ids))
    using (Native.TextResult r = native.decode(v, skipSpecialTokens)) {
      Check.Ok(r.status);
      return r.text;
    }
  }

  /// <summary>One user message (and an optional system message) with the generation prompt, in
  /// the model's chat template.</summary>
  public string ChatPrompt(string user, string system = "") {
    Check.NotNull(user, "user");
    using (handle.Use())
    using (Native.TextResult r = native.chat_prompt(user, system ?? "")) {
      Check.Ok(r.status);
      return r.text;
    }
  }

  /// <summary>Size of the vocabulary.</summary>
  public int VocabSize {
    get {
      using (handle.Use()) return native.vocab_size();
    }
  }

  internal NativeHandle Handle { get { return handle; } }

  /// <summary>Frees the tokenizer (a model's tokenizer: releases its hold on the model).</summary>
  public void Dispose() { handle.Dispose(); }
}

}
