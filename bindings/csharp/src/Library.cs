// Loading the native side once: the glue library libreason_csharp.so (SWIG's P/Invoke wrapper,
// which links libreason.so.MAJOR), then the major-version check against the version this
// assembly was built for.
using System;
using System.Collections.Generic;
using System.IO;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace LibReason {

/// <summary>The native library: loading, version, global settings.</summary>
/// <remarks>
/// The glue library <c>libreason_csharp.so</c> is looked up, in order, at
/// <c>$LIBREASON_CSHARP_LIBRARY</c> (a full path), next to LibReason.dll, in the install folder
/// (<c>/usr/lib/cli/libreason</c>), then by the dynamic linker (<c>LD_LIBRARY_PATH</c>, ld.so.cache).
/// It finds <c>libreason.so.MAJOR</c> through the dynamic linker. Loading happens once, on the
/// first use of any LibReason class (or <see cref="EnsureLoaded"/>); a failure names every path
/// tried and is thrown again by each later use.
/// </remarks>
public static class Library {
  /// <summary>The environment variable that names the glue library's full path.</summary>
  public const string PathVariable = "LIBREASON_CSHARP_LIBRARY";
  const string GlueFile = "libreason_csharp.so";

  static readonly object gate = new object();
  static volatile bool loaded;
  static string failure;        // the message of a failed load, thrown again by every later use
  static bool failureIsVersion; // failure was a version mismatch (ReasonException), not a missing library
  static string loadedFrom = "";
  static readonly List<string> tried = new List<string>();
  static readonly string preloaded;

  // Mono binds a P/Invoke's target when it compiles (or inlines into) a method that calls it, so
  // the preload must happen before any method that reaches LibReason.Native is compiled. Every
  // public class with native calls therefore has a static constructor that calls Init(): it runs
  // this one first. Never throws: EnsureLoaded reports failures.
  static Library() {
    try {
      preloaded = Preload(tried);
    } catch (Exception e) {
      tried.Add("preload: " + e.Message);
    }
  }

  /// <summary>Runs the static constructor (the preload) if it has not run yet.</summary>
  internal static void Init() {}

  /// <summary>The version of these bindings (LibReason.dll), e.g. "0.2.0".</summary>
  public static string BindingVersion { get { return BuildInfo.Version; } }

  /// <summary>The version of the loaded native library (libreason.so), e.g. "0.2.0".</summary>
  public static string Version {
    get {
      EnsureLoaded();
      return NativeVersion();
    }
  }

  /// <summary>The glue library file that was loaded, or the name handed to the dynamic linker.</summary>
  public static string LoadedFrom {
    get {
      EnsureLoaded();
      return loadedFrom;
    }
  }

  /// <summary>Number of CPU threads compute uses (default: all cores, or $REASON_NUM_THREADS).</summary>
  public static void SetNumThreads(int n) {
    EnsureLoaded();
    NativeSetNumThreads(n);
  }

  /// <summary>CPU threads for the compute of calls made on the calling thread only (0: back to
  /// the process-wide count); a TokenStream computes with the count of the thread that started it.</summary>
  public static void SetThreadNumThreads(int n) {
    EnsureLoaded();
    NativeSetThreadNumThreads(n);
  }

  /// <summary>The CPU thread count that applies to calls made on the calling thread.</summary>
  public static int NumThreads {
    get {
      EnsureLoaded();
      return NativeNumThreads();
    }
  }

  /// <summary>The C name of a status, e.g. "REASON_ERR_IO".</summary>
  public static string StatusName(Status status) { return StatusNames.Of(status); }

  /// <summary>Loads the native library (once) and checks its major version.</summary>
  /// <exception cref="DllNotFoundException">The glue or libreason.so could not be loaded (the message names every path tried).</exception>
  /// <exception cref="ReasonException">The native library has another major version (Status.Unsupported).</exception>
  public static void EnsureLoaded() {
    if (loaded) return;
    lock (gate) {
      if (loaded) return;
      if (failure == null) {
        try {
          string message = CheckNative();
          loadedFrom = preloaded ?? GlueFile;
          if (message == null) {
            loaded = true;
            return;
          }
          failure = message;
          failureIsVersion = true;
        } catch (Exception e) when (e is DllNotFoundException || e is EntryPointNotFoundException ||
                                    e is TypeInitializationException) {
          Exception inner = e;
          while (inner is TypeInitializationException && inner.InnerException != null) inner = inner.InnerException;
          // Mono's own message ("libreason_csharp assembly:<unknown assembly> ...") says no more.
          tried.Add("mono's DllImport search for libreason_csharp (" +
                    (inner is DllNotFoundException ? "not found" : inner.GetType().Name + ": " + inner.Message) + ")");
          failure = NotFoundMessage(tried);
        }
      }
      if (failureIsVersion) throw new ReasonException(Status.Unsupported, failure);
      throw new DllNotFoundException(failure);
    }
  }

  // The first P/Invokes: mono resolves "libreason_csharp" to the library preloaded by the static
  // constructor (same file, or the same SONAME), or searches itself when nothing was preloaded.
  // Null when the versions fit, else the message to throw.
  [MethodImpl(MethodImplOptions.NoInlining)]
  static string CheckNative() {
    int glueMajor = Native.reason_native.binding_version_major();
    return CheckVersions(Native.reason_native.version(), Native.reason_native.version_major(), glueMajor);
  }

  [MethodImpl(MethodImplOptions.NoInlining)]
  static string NativeVersion() { return Native.reason_native.version(); }

  [MethodImpl(MethodImplOptions.NoInlining)]
  static void NativeSetNumThreads(int n) { Native.reason_native.set_num_threads(n); }

  [MethodImpl(MethodImplOptions.NoInlining)]
  static void NativeSetThreadNumThreads(int n) { Native.reason_native.set_thread_num_threads(n); }

  [MethodImpl(MethodImplOptions.NoInlining)]
  static int NativeNumThreads() { return Native.reason_native.num_threads(); }

  /// <summary>null when the loaded versions fit these bindings, else the message to throw.</summary>
  internal static string CheckVersions(string nativeVersion, int nativeMajor, int glueMajor) {
    if (nativeMajor != BuildInfo.VersionMajor)
      return "libreason native library " + nativeVersion + " is not compatible with these bindings (built for " +
             BuildInfo.VersionMajor + ".x; LibReason.dll " + BuildInfo.Version + ")";
    if (glueMajor != BuildInfo.VersionMajor)
      return "libreason C# glue library (libreason_csharp.so, built for " + glueMajor +
             ".x) does not match LibReason.dll " + BuildInfo.Version;
    return null;
  }

  static string NotFoundMessage(List<string> tried) {
    return "libreason: could not load the C# glue library " + GlueFile + " (or the libreason.so." +
           BuildInfo.VersionMajor + " it links). Tried: " + string.Join("; ", tried) +
           ". Install the libreason-cil package, or set " + PathVariable + " to the library's full path.";
  }

  // dlopen()s the glue with RTLD_GLOBAL before mono's own search, so that the search order is
  // ours and a failure can name each path and dlerror(). Returns the path loaded, or null
  // (not Linux/glibc, or nothing found: mono's DllImport search then has the last word).
  static string Preload(List<string> tried) {
    if (Environment.OSVersion.Platform != PlatformID.Unix) return null;
    var candidates = new List<string>();
    string env = Environment.GetEnvironmentVariable(PathVariable);
    if (!string.IsNullOrEmpty(env)) candidates.Add(env);
    try {
      string dir = Path.GetDirectoryName(typeof(Library).Assembly.Location);
      if (!string.IsNullOrEmpty(dir)) candidates.Add(Path.Combine(dir, GlueFile));
    } catch (NotSupportedException) {
      // dynamic assembly: no location
    }
    candidates.Add(Path.Combine(BuildInfo.InstallDir, GlueFile));
    candidates.Add(GlueFile);  // the dynamic linker's search
    foreach (string c in candidates) {
      bool bare = c.IndexOf('/') < 0;
      if (!bare && !File.Exists(c)) {
        tried.Add(c + " (no such file)");
        continue;
      }
      string error;
      if (Dl.Open(c, out error)) return c;
      if (error == null) return null;  // no dlopen here: leave it to mono
      tried.Add(c + " (" + error + ")");
    }
    return null;  // mono's own search (dllmap, its default folders) gets the last try
  }

  static class Dl {
    const int RTLD_NOW = 2, RTLD_GLOBAL = 0x100;

    [DllImport("libdl.so.2", EntryPoint = "dlopen")]
    static extern IntPtr dlopen_dl(string file, int mode);
    [DllImport("libdl.so.2", EntryPoint = "dlerror")]
    static extern IntPtr dlerror_dl();
    [DllImport("libc.so.6", EntryPoint = "dlopen")]
    static extern IntPtr dlopen_c(string file, int mode);
    [DllImport("libc.so.6", EntryPoint = "dlerror")]
    static extern IntPtr dlerror_c();

    /// <summary>true: loaded. false with error == null: dlopen is not available here.</summary>
    internal static bool Open(string file, out string error) {
      error = null;
      try {
        if (dlopen_dl(file, RTLD_NOW | RTLD_GLOBAL) != IntPtr.Zero) return true;
        error = Marshal.PtrToStringAnsi(dlerror_dl()) ?? "dlopen failed";
        return false;
      } catch (Exception e) when (e is DllNotFoundException || e is EntryPointNotFoundException) {
      }
      try {
        if (dlopen_c(file, RTLD_NOW | RTLD_GLOBAL) != IntPtr.Zero) return true;
        error = Marshal.PtrToStringAnsi(dlerror_c()) ?? "dlopen failed";
        return false;
      } catch (Exception e) when (e is DllNotFoundException || e is EntryPointNotFoundException) {
        return false;
      }
    }
  }
}

}
