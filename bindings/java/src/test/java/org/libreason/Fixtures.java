package org.libreason;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.stream.Stream;

/** Paths of the test fixtures (system property libreason.fixtures = tests/fixtures). */
final class Fixtures {
  private Fixtures() {}

  static Path root() {
    String p = System.getProperty("libreason.fixtures");
    if (p == null) throw new IllegalStateException("run with -Dlibreason.fixtures=<repo>/tests/fixtures");
    return Path.of(p);
  }

  /** A random 2-layer Qwen2 (vocab 512, byte-level BPE tokenizer inside): mechanics only. */
  static String qwen2Tied() {
    return root().resolve("dense/qwen2_tied").toString();
  }

  /** A 0.2M-parameter model pretrained on the synthetic addition task. */
  static String additionBase() {
    return root().resolve("pipeline/addition-base").toString();
  }

  static final String ADDITION_PROMPT = "User: What is 23 + 45?\nAssistant:";

  static void deleteTree(Path dir) throws IOException {
    if (!Files.exists(dir)) return;
    try (Stream<Path> s = Files.walk(dir)) {
      for (Path p : (Iterable<Path>) s.sorted(Comparator.reverseOrder())::iterator) Files.delete(p);
    }
  }
}
