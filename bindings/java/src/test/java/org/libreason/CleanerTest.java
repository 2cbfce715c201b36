package org.libreason;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.ref.WeakReference;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * The Cleaner safety net: objects that were never closed are freed once unreachable, on the
 * cleaner thread, in whatever order the GC finds them (a stream still generating on a model that
 * is itself unreachable, a trainer on it, ...). Under AddressSanitizer this is the use-after-free
 * check of the reference counting in NativeRef.
 */
class CleanerTest {

  private static List<WeakReference<Object>> abandon(int round) {
    List<WeakReference<Object>> refs = new ArrayList<>();
    Model m = Model.load(Fixtures.qwen2Tied());
    TokenStream s = m.stream("round " + round,
        SamplingOptions.builder().temperature(0).maxNewTokens(500).ignoreEos(true).build());
    s.next();  // generating on its library thread
    Trainer t = Trainer.create(m, "optimizer { lr: 1e-3 }");
    Tokenizer own = Tokenizer.load(Fixtures.qwen2Tied());
    assertTrue(own.encode("x").length > 0);
    refs.add(new WeakReference<>(m));
    refs.add(new WeakReference<>(s));
    refs.add(new WeakReference<>(t));
    refs.add(new WeakReference<>(own));
    return refs;  // nothing closed
  }

  @Test
  void unclosedObjectsAreFreedWhenUnreachable() throws InterruptedException {
    List<WeakReference<Object>> refs = new ArrayList<>();
    for (int round = 0; round < 8; round++) refs.addAll(abandon(round));
    for (int i = 0; i < 100 && refs.stream().anyMatch(r -> r.get() != null); i++) {
      System.gc();
      Thread.sleep(20);
    }
    for (WeakReference<Object> r : refs) assertNull(r.get(), "still reachable");
    // The library still works after the cleaner freed everything.
    try (Model m = Model.load(Fixtures.qwen2Tied())) {
      assertEquals(4, m.generate("x", SamplingOptions.greedy(4)).tokenIds().length);
    }
  }
}
