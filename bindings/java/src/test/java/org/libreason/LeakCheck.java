package org.libreason;

import static org.junit.platform.engine.discovery.DiscoverySelectors.selectClass;

import java.lang.ref.WeakReference;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.junit.platform.launcher.Launcher;
import org.junit.platform.launcher.LauncherDiscoveryRequest;
import org.junit.platform.launcher.core.LauncherDiscoveryRequestBuilder;
import org.junit.platform.launcher.core.LauncherFactory;
import org.junit.platform.launcher.listeners.SummaryGeneratingListener;
import org.junit.platform.launcher.listeners.TestExecutionSummary;

/**
 * Driver of the sanitizer check (bindings/java/asan_check.sh, ctest binding_java_asan): runs the
 * test classes in this JVM (ASan checks every native access they make), then makes the GC, the
 * Cleaner and the finalizers free everything unreachable, so that what LeakSanitizer reports at
 * exit is memory nobody can free any more. Usage: LeakCheck [rounds] (default 2).
 */
public final class LeakCheck {
  private LeakCheck() {}

  public static void main(String[] args) throws Exception {
    int rounds = args.length > 0 ? Integer.parseInt(args[0]) : 2;
    Launcher launcher = LauncherFactory.create();
    long failed = 0;
    for (int r = 0; r < rounds; r++) {
      LauncherDiscoveryRequest req = LauncherDiscoveryRequestBuilder.request()
          .selectors(selectClass(ModelTest.class), selectClass(ConcurrencyTest.class), selectClass(CleanerTest.class))
          .build();
      SummaryGeneratingListener listener = new SummaryGeneratingListener();
      launcher.execute(req, listener);
      TestExecutionSummary s = listener.getSummary();
      s.printFailuresTo(new java.io.PrintWriter(System.out, true), 20);
      System.out.println("round " + r + ": " + s.getTestsSucceededCount() + " tests passed, " + s.getTestsFailedCount()
          + " failed");
      failed += s.getTestsFailedCount();
    }
    drain();
    System.out.println(failed == 0 ? "LeakCheck: all tests passed; exiting for LeakSanitizer" : "LeakCheck: FAILED");
    if (failed != 0) System.exit(1);
  }

  /** Collects garbage until the Cleaner has run an action registered now (it runs in order). */
  static void drain() throws InterruptedException {
    for (int i = 0; i < 3; i++) {
      CountDownLatch cleaned = new CountDownLatch(1);
      Object sentinel = new Object();
      WeakReference<Object> w = new WeakReference<>(sentinel);
      NativeLibrary.CLEANER.register(sentinel, cleaned::countDown);
      sentinel = null;
      for (int k = 0; k < 200 && (w.get() != null || cleaned.getCount() > 0); k++) {
        System.gc();
        System.runFinalization();
        cleaned.await(20, TimeUnit.MILLISECONDS);
      }
    }
    System.runFinalization();
    Thread.sleep(200);
  }
}
