package org.libreason;

/**
 * A reference count over one native object: the owning Java object holds one reference, every
 * call in flight holds one, and every dependent native object (a stream or trainer on a model)
 * holds one. The object is freed (by {@code free}, which must not reference the Java owner) when
 * the count drops to zero, so close() from any thread, a Cleaner run, or closing objects in the
 * "wrong" order never frees memory a running call or a dependent still uses.
 */
final class NativeRef {
  private final Runnable free;
  private int count = 1;

  NativeRef(Runnable free) {
    this.free = free;
  }

  /** Adds a reference; false when the object is already freed. */
  synchronized boolean retain() {
    if (count <= 0) return false;
    count++;
    return true;
  }

  void release() {
    boolean last;
    synchronized (this) {
      if (count <= 0) return;
      last = --count == 0;
    }
    if (last) free.run();
  }
}
