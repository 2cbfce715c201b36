package org.libreason;

import org.libreason.internal.reason_native;

/** Library-wide information and settings. */
public final class Reason {
  private Reason() {}

  /** The version of the native libreason.so actually loaded, "MAJOR.MINOR.PATCH". */
  public static String version() {
    NativeLibrary.ensureLoaded();
    return reason_native.version();
  }

  /** The version this jar was built for (also the jar manifest's Implementation-Version). */
  public static String bindingVersion() {
    return Version.STRING;
  }

  /** Where the JNI library was loaded from (a path, or "... from java.library.path"). */
  public static String nativeLibrary() {
    return NativeLibrary.loadedFrom();
  }

  /**
   * CPU threads the library computes with, process-wide, for calls that start afterwards; 0
   * restores the default (all cores, or $REASON_NUM_THREADS).
   */
  public static void setNumThreads(int n) {
    NativeLibrary.ensureLoaded();
    reason_native.set_num_threads(n);
  }

  /**
   * CPU threads for the compute of calls made on the calling Java thread only (a service that
   * trains on one thread and serves generations on others gives each its own count); 0 returns
   * the thread to the process-wide count. A TokenStream computes with the count of the thread
   * that started it.
   */
  public static void setThreadNumThreads(int n) {
    NativeLibrary.ensureLoaded();
    reason_native.set_thread_num_threads(n);
  }

  /** The CPU thread count that applies to calls made on the calling thread. */
  public static int numThreads() {
    NativeLibrary.ensureLoaded();
    return reason_native.num_threads();
  }

  /** Loads and checks the native library now (it is otherwise loaded by the first call). */
  public static void load() {
    NativeLibrary.ensureLoaded();
  }
}
