package org.libreason;

/** Why a completion ended ({@code reason_finish_reason}). */
public enum FinishReason {
  /** max_new_tokens was reached: the completion is truncated. */
  LENGTH,
  /** EOS, a stop token or a stop string. */
  STOP,
  /** The token listener returned false (or threw), or the stream was closed early. */
  STOPPED;

  static FinishReason of(int code) {
    switch (code) {
      case 0: return LENGTH;
      case 1: return STOP;
      case 2: return STOPPED;
      default: throw new IllegalArgumentException("unknown finish reason " + code);
    }
  }
}
