package org.libreason;

/** The library's status codes ({@code reason_status} in reason.h). */
public enum ReasonStatus {
  OK(0, "REASON_OK"),
  /** A null handle, a bad option, an out-of-range token id. */
  INVALID_ARGUMENT(1, "REASON_ERR_INVALID_ARGUMENT"),
  /** A file could not be opened, read or written. */
  IO(2, "REASON_ERR_IO"),
  /** A file is malformed: corrupt, truncated or hostile. */
  FORMAT(3, "REASON_ERR_FORMAT"),
  /** Valid but unsupported: an unknown architecture or dtype. */
  UNSUPPORTED(4, "REASON_ERR_UNSUPPORTED"),
  OUT_OF_MEMORY(5, "REASON_ERR_OUT_OF_MEMORY"),
  /** A compute backend failed. */
  BACKEND(6, "REASON_ERR_BACKEND"),
  /** Stopped by a callback (in Java: a callback threw). */
  CANCELLED(7, "REASON_ERR_CANCELLED"),
  INTERNAL(8, "REASON_ERR_INTERNAL"),
  /** A code this version of the bindings does not know (a newer library). */
  UNKNOWN(-1, "REASON_ERR_UNKNOWN");

  private final int code;
  private final String cName;

  ReasonStatus(int code, String cName) {
    this.code = code;
    this.cName = cName;
  }

  /** The numeric code (as in C). */
  public int code() {
    return code;
  }

  /** The C name, e.g. "REASON_ERR_IO". */
  public String cName() {
    return cName;
  }

  public static ReasonStatus of(int code) {
    for (ReasonStatus s : values()) {
      if (s.code == code) return s;
    }
    return UNKNOWN;
  }
}
