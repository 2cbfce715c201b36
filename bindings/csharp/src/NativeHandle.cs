// Ownership of native objects. A SWIG proxy (LibReason.Native.X) holds a HandleRef and frees its
// C++ object from its own finalizer, in no particular order with other finalizers. LibReason
// instead hands each proxy to a NativeHandle (a SafeHandle): the proxy's finalizer is suppressed,
// and the SafeHandle's critical finalizer (or Dispose) frees the object. A handle that borrows
// another (a trainer its models, a stream its model, a borrowed tokenizer its model) holds a
// reference on it (DangerousAddRef), so the borrowed object is freed only after its last
// borrower, whatever order Dispose or the finalizers run in. Each call leases its handle for
// the call's duration: a Dispose from another thread while a call runs frees the object when the
// call returns, never under it.
using System;
using System.Runtime.InteropServices;

namespace LibReason {

internal sealed class NativeHandle : SafeHandle {
  readonly IDisposable proxy;
  readonly NativeHandle[] borrowed;
  readonly string owner;
  // Dispose was called. Mono's SafeHandle stays !IsClosed (and accepts DangerousAddRef) after a
  // Dispose while references are outstanding, so "disposed" is tracked here.
  volatile bool disposed;

  /// <param name="proxy">The SWIG proxy that owns the native object.</param>
  /// <param name="pointer">Its C++ pointer (for IsInvalid; never dereferenced here).</param>
  /// <param name="owner">The public type, for ObjectDisposedException.</param>
  /// <param name="borrowed">Handles that must stay alive while this one is (null entries ignored).</param>
  internal NativeHandle(IDisposable proxy, IntPtr pointer, string owner, params NativeHandle[] borrowed)
      : base(IntPtr.Zero, true) {
    this.proxy = proxy;
    this.owner = owner;
    var taken = new System.Collections.Generic.List<NativeHandle>();
    try {
      foreach (NativeHandle h in borrowed) {
        if (h == null) continue;
        if (h.IsDisposed) throw new ObjectDisposedException(h.owner);
        bool ok = false;
        h.DangerousAddRef(ref ok);
        if (ok) taken.Add(h);
      }
    } catch {
      foreach (NativeHandle h in taken) h.DangerousRelease();
      throw;
    }
    this.borrowed = taken.ToArray();
    GC.SuppressFinalize(proxy);  // only this handle frees the object
    SetHandle(pointer);
  }

  public override bool IsInvalid { get { return handle == IntPtr.Zero; } }

  /// <summary>Dispose was called (the object itself may live on while borrowers hold it).</summary>
  internal bool IsDisposed { get { return disposed || IsClosed; } }

  protected override void Dispose(bool disposing) {
    disposed = true;
    base.Dispose(disposing);
  }

  protected override bool ReleaseHandle() {
    try {
      proxy.Dispose();  // delete of the C++ handle class: its destructor frees the C handle
    } finally {
      foreach (NativeHandle h in borrowed) h.DangerousRelease();
    }
    return true;
  }

  /// <summary>Keeps the object alive for a call: <c>using (handle.Use()) { ... }</c>.</summary>
  internal Lease Use() {
    if (IsDisposed) throw new ObjectDisposedException(owner);
    bool ok = false;
    try {
      DangerousAddRef(ref ok);
    } catch (ObjectDisposedException) {
      throw new ObjectDisposedException(owner);
    }
    return new Lease(this);
  }

  internal struct Lease : IDisposable {
    NativeHandle h;
    internal Lease(NativeHandle h) { this.h = h; }
    public void Dispose() {
      if (h != null) {
        h.DangerousRelease();
        h = null;
      }
    }
  }

  /// <summary>The C++ pointer of a SWIG proxy (its HandleRef).</summary>
  internal static IntPtr PointerOf(HandleRef r) { return r.Handle; }
}

}
