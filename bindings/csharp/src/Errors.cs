// Errors: every failing native call becomes a ReasonException carrying the library's status code,
// its name (REASON_ERR_IO, ...) and message (which names the file, tensor or config field).
using System;

namespace LibReason {

/// <summary>The library's status codes (reason_status in reason.h).</summary>
public enum Status {
  Ok = 0,
  /// <summary>A null handle, bad option or out-of-range token id.</summary>
  InvalidArgument = 1,
  /// <summary>A file could not be opened, read or written.</summary>
  Io = 2,
  /// <summary>A file is malformed: corrupt, truncated or hostile.</summary>
  Format = 3,
  /// <summary>Valid but unsupported: unknown architecture, dtype.</summary>
  Unsupported = 4,
  OutOfMemory = 5,
  /// <summary>A compute backend failed.</summary>
  Backend = 6,
  /// <summary>Stopped by a callback.</summary>
  Cancelled = 7,
  Internal = 8,
}

/// <summary>A libreason call failed. <see cref="Exception.Message"/> is the library's message.</summary>
[Serializable]
public class ReasonException : Exception {
  /// <summary>The failing call's status.</summary>
  public Status Status { get; }
  /// <summary>The status's C name, e.g. "REASON_ERR_IO".</summary>
  public string StatusName { get; }

  public ReasonException(Status status, string statusName, string message) : base(message) {
    Status = status;
    StatusName = statusName ?? StatusNames.Of(status);
  }

  public ReasonException(Status status, string message) : this(status, null, message) {}

  public override string ToString() {
    return StatusName + ": " + base.ToString();
  }
}

internal static class StatusNames {
  // The C names (reason_status_name); used before the native library is loaded.
  static readonly string[] names = {
    "REASON_OK", "REASON_ERR_INVALID_ARGUMENT", "REASON_ERR_IO", "REASON_ERR_FORMAT", "REASON_ERR_UNSUPPORTED",
    "REASON_ERR_OUT_OF_MEMORY", "REASON_ERR_BACKEND", "REASON_ERR_CANCELLED", "REASON_ERR_INTERNAL",
  };

  internal static string Of(Status s) {
    int i = (int)s;
    return i >= 0 && i < names.Length ? names[i] : "REASON_ERR_UNKNOWN(" + i + ")";
  }
}

internal static class Check {
  /// <summary>Throws ReasonException when a native Status is not ok; disposes it either way.</summary>
  internal static void Ok(Native.Status status) {
    using (status) {
      int code = status.code;
      if (code == 0) return;
      throw new ReasonException((Status)code, Native.reason_native.status_name(code), status.message);
    }
  }

  internal static T NotNull<T>(T value, string name) where T : class {
    if (value == null) throw new ArgumentNullException(name);
    return value;
  }
}

}
