package org.libreason;

/**
 * Receives the tokens of a generation as they are produced, on the thread that called
 * generate(), in order per request. Return false to stop that request (its completion ends with
 * {@link FinishReason#STOPPED}).
 *
 * <p>An exception thrown here does not unwind through native code: it stops the generation (no
 * further tokens are delivered to this listener) and generate() rethrows it once the native call
 * has returned (a checked exception wrapped in a {@link ReasonException} with status {@link
 * ReasonStatus#CANCELLED}).
 */
@FunctionalInterface
public interface TokenListener {
  boolean onToken(Token token) throws Exception;
}
