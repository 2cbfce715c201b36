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

  /** Loads and checks the native library now (it is otherwise loaded by the first call). */
  public static void load() {
    NativeLibrary.ensureLoaded();
  }
}
