package org.libreason;

import java.lang.ref.Cleaner;
import org.libreason.internal.reason_native;

/**
 * Loads the JNI glue (libreason_java.so, which links libreason.so.MAJOR) once per class loader and
 * checks that its major version is the one this jar was built for.
 *
 * <p>Where it looks: the system property {@value #PROPERTY} (an absolute path) when it is set,
 * else {@code System.loadLibrary("reason_java")}, which searches {@code java.library.path}
 * (Debian's JVM includes /usr/lib/x86_64-linux-gnu/jni, where the libreason-java package puts it).
 */
final class NativeLibrary {
  static final String PROPERTY = "libreason.java.library";
  static final String NAME = "reason_java";

  /** Frees native objects that were not closed (safety net only; close() is the way). */
  static final Cleaner CLEANER = Cleaner.create(r -> {
    Thread t = new Thread(r, "libreason-cleaner");
    t.setDaemon(true);
    return t;
  });

  private NativeLibrary() {}

  /** Throws UnsatisfiedLinkError (a fresh one each time, with the first failure as cause). */
  static void ensureLoaded() {
    Throwable e = Holder.ERROR;
    if (e != null) {
      UnsatisfiedLinkError err = new UnsatisfiedLinkError(e.getMessage());
      err.initCause(e);
      throw err;
    }
  }

  /** What was loaded: the path given by the property, or "reason_java from java.library.path". */
  static String loadedFrom() {
    ensureLoaded();
    return Holder.FROM;
  }

  /**
   * The reason these bindings cannot use the loaded libraries, or null when they can. jarMajor is
   * this jar's major version, glueMajor the one libreason_java.so was compiled for, nativeVersion
   * the version of the libreason.so actually loaded.
   */
  static String incompatibility(int jarMajor, int glueMajor, String nativeVersion, String from) {
    if (glueMajor != jarMajor) {
      return "libreason JNI library " + from + " was built for libreason " + glueMajor
          + ".x, but this jar is libreason " + Version.STRING + " (" + jarMajor
          + ".x): install the libreason-java package of the same version as the jar";
    }
    int nativeMajor;
    try {
      nativeMajor = Integer.parseInt(nativeVersion.substring(0, nativeVersion.indexOf('.')));
    } catch (RuntimeException e) {
      return "libreason native library reports an unreadable version \"" + nativeVersion + "\"";
    }
    if (nativeMajor != jarMajor) {
      return "libreason native library " + nativeVersion + " is not compatible with these bindings (built for "
          + jarMajor + ".x)";
    }
    return null;
  }

  private static final class Holder {
    static final String FROM;
    static final Throwable ERROR;

    static {
      String explicit = System.getProperty(PROPERTY);
      String from;
      Throwable error = null;
      try {
        if (explicit != null && !explicit.isEmpty()) {
          from = explicit;
          System.load(explicit);
        } else {
          from = "lib" + NAME + ".so from java.library.path";
          System.loadLibrary(NAME);
        }
      } catch (UnsatisfiedLinkError | SecurityException e) {
        from = null;
        String where = explicit != null && !explicit.isEmpty()
            ? "from " + explicit + " (system property " + PROPERTY + ")"
            : "with System.loadLibrary(\"" + NAME + "\"), java.library.path=" + System.getProperty("java.library.path");
        UnsatisfiedLinkError err = new UnsatisfiedLinkError("could not load the libreason JNI library lib" + NAME
            + ".so " + where + ": " + e.getMessage() + ". Install the libreason-java package (it puts lib" + NAME
            + ".so in /usr/lib/<triplet>/jni and needs libreason0), or pass -D" + PROPERTY
            + "=/absolute/path/lib" + NAME + ".so or -Djava.library.path=DIR");
        err.initCause(e);
        error = err;
      }
      if (error == null) {
        try {
          String why = incompatibility(Version.MAJOR, reason_native.binding_version_major(), reason_native.version(), from);
          if (why != null) error = new UnsatisfiedLinkError(why);
        } catch (UnsatisfiedLinkError e) {
          UnsatisfiedLinkError err = new UnsatisfiedLinkError("libreason JNI library " + from
              + " does not match this jar (libreason " + Version.STRING + "): " + e.getMessage());
          err.initCause(e);
          error = err;
        }
      }
      FROM = from;
      ERROR = error;
    }
  }
}
