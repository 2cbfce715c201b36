package org.libreason;

/**
 * A failure reported by libreason: the status code, its name and the library's message (which
 * names what was wrong: the file, the tensor, the config field). For example loading a model
 * from a missing directory gives status {@link ReasonStatus#IO} and a message naming the path.
 */
public class ReasonException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  private final int code;
  private final String detail;

  public ReasonException(int code, String detail) {
    this(code, detail, null);
  }

  public ReasonException(int code, String detail, Throwable cause) {
    super(nameOf(code) + ": " + detail, cause);
    this.code = code;
    this.detail = detail;
  }

  public ReasonException(ReasonStatus status, String detail, Throwable cause) {
    this(status.code(), detail, cause);
  }

  /** The numeric status ({@code reason_status}). */
  public int code() {
    return code;
  }

  public ReasonStatus status() {
    return ReasonStatus.of(code);
  }

  /** The status's C name, e.g. "REASON_ERR_IO". */
  public String statusName() {
    return nameOf(code);
  }

  /** The library's message alone (getMessage() is "STATUS_NAME: message"). */
  public String detail() {
    return detail;
  }

  private static String nameOf(int code) {
    ReasonStatus s = ReasonStatus.of(code);
    return s == ReasonStatus.UNKNOWN ? "REASON_STATUS_" + code : s.cName();
  }
}
