package org.libreason;

import java.lang.ref.Cleaner;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * The close/Cleaner/in-flight-call bookkeeping of one public handle class. The Cleaner action is
 * {@code ref::release}: it references the native state, never the owner.
 */
final class Lifecycle {
  private final String what;
  private final NativeRef ref;
  private final Cleaner.Cleanable cleanable;
  private final AtomicBoolean closed = new AtomicBoolean();

  Lifecycle(Object owner, String what, NativeRef ref) {
    this.what = what;
    this.ref = ref;
    this.cleanable = NativeLibrary.CLEANER.register(owner, ref::release);
  }

  NativeRef ref() {
    return ref;
  }

  /** Starts a call: the native object stays alive until the matching exit(). */
  void enter() {
    if (closed.get() || !ref.retain()) throw new IllegalStateException(what + " is closed");
  }

  void exit() {
    ref.release();
  }

  boolean isClosed() {
    return closed.get();
  }

  /** Releases the owner's reference (once); the native object is freed when no call uses it. */
  void close() {
    if (closed.compareAndSet(false, true)) cleanable.clean();
  }
}
