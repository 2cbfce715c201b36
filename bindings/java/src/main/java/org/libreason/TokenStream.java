package org.libreason;

import java.lang.ref.Reference;
import java.util.Iterator;
import java.util.NoSuchElementException;
import org.libreason.internal.StreamEvent;
import org.libreason.internal.StreamEventResult;

/**
 * Pull-style streaming of one completion ({@link Model#stream}): generation runs on a library
 * thread and {@link #next()} takes its tokens one by one (no Java callback runs on the hot path).
 *
 * <pre>{@code
 * try (TokenStream s = model.stream(prompt, SamplingOptions.greedy(64))) {
 *   for (Token t : s) System.out.print(t.text());
 *   System.out.println(" [" + s.finishReason() + "]");
 * }
 * }</pre>
 *
 * <p>An Iterator and a single-use Iterable (iterator() returns this stream once). Used by one
 * thread at a time (its methods are synchronized). Closing it before the end stops generation.
 * A failure of generation surfaces as a ReasonException from hasNext()/next().
 */
public final class TokenStream implements Iterator<Token>, Iterable<Token>, AutoCloseable {
  private final org.libreason.internal.Stream handle;
  private final Lifecycle life;
  private final StringBuilder text = new StringBuilder();
  private Token pending;
  private FinishReason finish;
  private boolean iterated;

  private TokenStream(org.libreason.internal.Stream handle, NativeRef model) {
    this.handle = handle;
    // The native stream runs on the model: it holds a reference to it until freed.
    this.life = new Lifecycle(this, "TokenStream", new NativeRef(() -> {
      handle.delete();  // stops generation and joins the library thread
      model.release();
    }));
  }

  /** Starts a stream on a model whose lifecycle the caller has entered. */
  static TokenStream start(org.libreason.internal.Model model, NativeRef modelRef, String prompt,
      SamplingOptions options) {
    if (!modelRef.retain()) throw new IllegalStateException("Model is closed");
    org.libreason.internal.Stream s = new org.libreason.internal.Stream();
    org.libreason.internal.SamplingOptions o = options.toNative();
    try {
      Convert.check(s.start(model, prompt, o));
    } catch (RuntimeException | Error e) {
      s.delete();
      modelRef.release();
      throw e;
    } finally {
      o.delete();
    }
    return new TokenStream(s, modelRef);
  }

  /** Waits for the next token; false once the completion has ended (or the stream was closed). */
  @Override
  public synchronized boolean hasNext() {
    if (pending != null) return true;
    if (finish != null) return false;
    if (life.isClosed()) {
      finish = FinishReason.STOPPED;
      return false;
    }
    life.enter();
    StreamEventResult r = null;
    try {
      r = handle.next();
      Convert.check(r.getStatus());
      StreamEvent e = r.getEvent();
      if (e.getDone()) {
        finish = FinishReason.of(e.getFinish_reason());
        life.close();  // frees the native stream as soon as this call exits
        return false;
      }
      pending = new Token(0, e.getToken_id(), e.getLogprob(), e.getText());
      text.append(pending.text());
      return true;
    } finally {
      if (r != null) r.delete();
      life.exit();
      Reference.reachabilityFence(this);
    }
  }

  @Override
  public synchronized Token next() {
    if (!hasNext()) throw new NoSuchElementException("the completion has ended (" + finish + ")");
    Token t = pending;
    pending = null;
    return t;
  }

  /** This stream, once. */
  @Override
  public synchronized Iterator<Token> iterator() {
    if (iterated) throw new IllegalStateException("a TokenStream can be iterated once");
    iterated = true;
    return this;
  }

  /** Why the completion ended, or null while it is still running. */
  public synchronized FinishReason finishReason() {
    return finish;
  }

  /** The text of the tokens taken so far. */
  public synchronized String text() {
    return text.toString();
  }

  /** Stops generation if it is still running and frees the stream (idempotent). */
  @Override
  public void close() {
    life.close();
  }
}
