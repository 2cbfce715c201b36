// TokenStream: the pull-style stream (reason_stream_*) as an IEnumerable<Token>. Generation runs
// on a library thread; each MoveNext waits for the next token. No callback into C# is involved.
using System;
using System.Collections;
using System.Collections.Generic;

namespace LibReason {

/// <summary>The tokens of one completion, pulled one by one: <c>foreach (Token t in model.Stream(prompt)) ...</c>.</summary>
/// <remarks>Enumerable once, by one thread at a time. Leaving the loop early (or Dispose) stops
/// generation; the enumerator's end disposes the stream, so a plain foreach needs no using. The
/// stream keeps its model alive until it is disposed.</remarks>
public sealed class TokenStream : IEnumerable<Token>, IDisposable {
  static TokenStream() { Library.Init(); }  // the native preload first (see Library)

  readonly Native.Stream native;
  readonly NativeHandle handle;
  bool enumerated;
  bool ended;  // the native end was reached
  FinishReason? finishReason;

  internal TokenStream(Model model, string prompt, SamplingOptions options) {
    var s = new Native.Stream();
    try {
      using (model.Handle.Use())
      using (Native.SamplingOptions opts = options.ToNative())
        Check.Ok(s.start(model.native, prompt, opts));
    } catch {
      s.Dispose();
      throw;
    }
    native = s;
    handle = new NativeHandle(s, NativeHandle.PointerOf(Native.Stream.getCPtr(s)), "LibReason.TokenStream",
                              model.Handle);
  }

  /// <summary>Why the completion ended: null while it runs; <see cref="LibReason.FinishReason.Stopped"/>
  /// when the stream was disposed before its end.</summary>
  public FinishReason? FinishReason { get { return finishReason; } }

  /// <summary>Waits for the next token. false at the end (then <see cref="FinishReason"/> is set), and
  /// every time after it.</summary>
  /// <exception cref="ReasonException">Generation failed.</exception>
  /// <exception cref="ObjectDisposedException">The stream was disposed before its end.</exception>
  public bool TryNext(out Token token) {
    token = default(Token);
    if (ended) return false;
    using (handle.Use())
    using (Native.StreamEventResult r = native.next()) {
      Check.Ok(r.status);
      using (Native.StreamEvent e = r.Event) {
        if (e.done) {
          finishReason = (LibReason.FinishReason)e.finish_reason;
          ended = true;
          return false;
        }
        token = new Token(e.token_id, e.logprob, e.text);
        return true;
      }
    }
  }

  public IEnumerator<Token> GetEnumerator() {
    if (enumerated) throw new InvalidOperationException("a TokenStream can be enumerated once");
    enumerated = true;
    return Iterate();
  }

  IEnumerator IEnumerable.GetEnumerator() { return GetEnumerator(); }

  IEnumerator<Token> Iterate() {
    try {
      Token t;
      while (TryNext(out t)) yield return t;
    } finally {
      Dispose();
    }
  }

  /// <summary>Stops generation if it still runs, waits for the library thread and frees the stream.</summary>
  public void Dispose() {
    if (!finishReason.HasValue && !handle.IsDisposed) finishReason = LibReason.FinishReason.Stopped;
    handle.Dispose();
  }
}

}
