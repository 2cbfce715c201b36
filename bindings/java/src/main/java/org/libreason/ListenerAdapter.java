package org.libreason;

import org.libreason.internal.TokenHandler;

/**
 * The SWIG director that forwards on_token to a TokenListener. Nothing thrown by the listener
 * reaches native code: the first Throwable is kept (to be rethrown by generate() after the native
 * call returned) and every later call returns false, which stops the request.
 *
 * <p>SWIG keeps only a weak reference from the C++ director to this object, so the caller keeps
 * it strongly reachable (a local used after the native call) for as long as native code can call
 * it, then deletes it.
 */
final class ListenerAdapter extends TokenHandler {
  private final TokenListener listener;
  private volatile Throwable failure;

  ListenerAdapter(TokenListener listener) {
    this.listener = listener;
  }

  @Override
  public boolean on_token(long request, int tokenId, float logprob, String text) {
    if (failure != null) return false;
    try {
      return listener.onToken(new Token(request, tokenId, logprob, text));
    } catch (Throwable t) {
      failure = t;
      return false;
    }
  }

  /** Rethrows what the listener threw, if it threw. */
  void rethrow() {
    Throwable t = failure;
    if (t == null) return;
    if (t instanceof RuntimeException r) throw r;
    if (t instanceof Error e) throw e;
    throw new ReasonException(ReasonStatus.CANCELLED, "generation stopped: the token listener threw " + t, t);
  }
}
