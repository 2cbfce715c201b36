package org.libreason;

import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Consumer;
import org.libreason.internal.ToolReply;

/**
 * The SWIG director that forwards call() to a Java ToolFunction; reply is a view of the C++
 * caller's object (not owned, valid for the call). An exception becomes a failed
 * call whose text is the exception's message. inFlight counts calls currently inside Java, so the
 * owner never deletes the director under a call that outlived its deadline.
 */
final class ToolAdapter extends org.libreason.internal.ToolFunction {
  private final String name;
  private final ToolFunction fn;
  private final Consumer<Throwable> onError;
  final AtomicInteger inFlight = new AtomicInteger();

  ToolAdapter(String name, ToolFunction fn, Consumer<Throwable> onError) {
    this.name = name;
    this.fn = fn;
    this.onError = onError;
  }

  @Override
  public void call(String argumentsJson, ToolReply reply) {
    inFlight.incrementAndGet();
    try {
      String text = fn.call(argumentsJson);
      reply.setText(text == null ? "" : text);
    } catch (Throwable t) {
      reply.setFailed(true);
      reply.setText(t.getMessage() != null ? t.getMessage() : t.toString());
      try {
        if (onError != null) onError.accept(new RuntimeException("tool '" + name + "' threw " + t, t));
      } catch (Throwable ignored) {
        // the error hook itself failed: the call still counts as failed
      }
    } finally {
      inFlight.decrementAndGet();
    }
  }

  /** As RewardAdapter.dispose: frees the director unless a call is still running in it. */
  void dispose() {
    if (inFlight.get() == 0) {
      delete();
    } else {
      swigReleaseOwnership();
    }
  }
}
