package org.libreason;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.NoSuchElementException;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The binding's surface on the tiny fixtures (the per-language list, and more). */
class ModelTest {
  static Model tiny;

  @BeforeAll
  static void load() {
    tiny = Model.load(Fixtures.qwen2Tied());
  }

  @AfterAll
  static void close() {
    tiny.close();
  }

  @Test
  void versionsMatchAndManifestCarriesIt() {
    assertEquals("0.2.0".split("\\.")[0], Reason.version().split("\\.")[0]);
    assertEquals(Reason.version(), Reason.bindingVersion());
    assertEquals(Reason.bindingVersion(), manifestVersion());
    assertTrue(Reason.nativeLibrary().endsWith("libreason_java.so"), Reason.nativeLibrary());
  }

  @Test
  void threadCountOfOneThreadLeavesTheOthersAlone() throws InterruptedException {
    Reason.setNumThreads(3);
    int[] seen = new int[2];
    Thread t = new Thread(() -> {
      Reason.setThreadNumThreads(1);
      seen[0] = Reason.numThreads();
      Reason.setThreadNumThreads(0);
      seen[1] = Reason.numThreads();
    });
    t.start();
    t.join();
    assertEquals(1, seen[0]);
    assertEquals(3, seen[1]);
    assertEquals(3, Reason.numThreads());
    Reason.setNumThreads(0);
  }

  /** Implementation-Version of the jar that holds Model.class (tests share its package). */
  static String manifestVersion() {
    try (java.util.jar.JarFile jar = new java.util.jar.JarFile(
        Path.of(Model.class.getProtectionDomain().getCodeSource().getLocation().toURI()).toFile())) {
      return jar.getManifest().getMainAttributes().getValue("Implementation-Version");
    } catch (IOException | java.net.URISyntaxException e) {
      throw new AssertionError(e);
    }
  }

  @Test
  void incompatibleMajorVersionsAreRefusedWithAClearMessage() {
    assertNull(NativeLibrary.incompatibility(0, 0, "0.7.1", "x"));
    assertEquals("libreason native library 1.0.0 is not compatible with these bindings (built for 0.x)",
        NativeLibrary.incompatibility(0, 0, "1.0.0", "x"));
    String glue = NativeLibrary.incompatibility(0, 1, "0.2.0", "/usr/lib/x86_64-linux-gnu/jni/libreason_java.so");
    assertTrue(glue.contains("libreason_java.so was built for libreason 1.x"), glue);
  }

  @Test
  void samplingDefaultsComeFromTheModelsGenerationConfig() {
    // qwen2_tied_r1_sampling: qwen2_tied with DeepSeek-R1's generation_config.json (0.6 / 0.95).
    try (Model m = Model.load(Fixtures.root().resolve("dense/qwen2_tied_r1_sampling").toString())) {
      SamplingOptions o = m.samplingDefaults(SamplingOptions.builder().topK(7).build());
      assertEquals(0.6f, o.temperature());
      assertEquals(0.95f, o.topP());
      assertEquals(7, o.topK());  // not in the file: kept
      assertEquals(256, o.maxNewTokens());
    }
    SamplingOptions plain = tiny.samplingDefaults();  // no sampling fields: the defaults unchanged
    assertEquals(1.0f, plain.temperature());
    assertEquals(1.0f, plain.topP());
  }

  @Test
  void info() {
    ModelInfo i = tiny.info();
    assertEquals(512, i.vocabSize());
    assertEquals(2, i.numLayers());
    assertTrue(i.numParams() > 0);
    assertFalse(i.architecture().isEmpty());
    assertEquals("cpu", i.device());
    assertEquals("f32", i.kvDType());
  }

  @Test
  void quantizedWeightsAtLoad() {
    String dir = Fixtures.root().resolve("quant/llama256").toString();
    try (Model m = Model.load(dir, "f32", "cpu", "auto", "q4_k")) {
      assertEquals("Q6_K", m.info().quantizedWeights());  // the tied embedding / LM head, as Q4_K_M
      List<Completion> c = m.generateIds(List.of(new int[] {5, 17, 42, 99}), SamplingOptions.greedy(5), null);
      assertTrue(c.get(0).tokenIds().length > 0);
    }
    try (Model m = Model.load(dir)) {
      assertEquals("", m.info().quantizedWeights());
    }
    ReasonException bad = assertThrows(ReasonException.class, () -> Model.load(dir, "f32", "cpu", "auto", "q3_k"));
    assertEquals(ReasonStatus.INVALID_ARGUMENT, bad.status());
    assertTrue(bad.detail().contains("q3_k"), bad.detail());
  }

  @Test
  void deviceAndKvDTypeAreChosenAtLoad() {
    try (Model m = Model.load(Fixtures.qwen2Tied().toString(), "f32", "cpu", "bf16")) {
      assertEquals("cpu", m.info().device());
      assertEquals("bf16", m.info().kvDType());
    }
    ReasonException bad = assertThrows(ReasonException.class,
        () -> Model.load(Fixtures.qwen2Tied().toString(), "f32", "tpu", "auto"));
    assertEquals(ReasonStatus.INVALID_ARGUMENT, bad.status());
    assertTrue(bad.detail().contains("tpu"), bad.detail());
    // CUDA runs where a GPU is usable; elsewhere it is UNSUPPORTED with the reason.
    try (Model m = Model.load(Fixtures.qwen2Tied().toString(), "f32", "cuda", "auto")) {
      assertEquals("cuda", m.info().device());
    } catch (ReasonException e) {
      assertEquals(ReasonStatus.UNSUPPORTED, e.status());
      assertTrue(e.detail().contains("device cuda is not available"), e.detail());
    }
  }

  @Test
  void encodeDecodeRoundTrip() {
    Tokenizer tok = tiny.tokenizer();
    assertSame(tok, tiny.tokenizer());
    assertTrue(tok.vocabSize() > 256 && tok.vocabSize() <= 512, "vocab " + tok.vocabSize());
    for (String text : List.of("Hello world, 23 + 45 = 68.", "héllo wörld — 数学 😀 \t\n end")) {
      int[] ids = tok.encode(text);
      assertTrue(ids.length > 0);
      for (int id : ids) assertTrue(id >= 0 && id < tok.vocabSize());
      assertEquals(text, tok.decode(ids), "round trip of " + text);
    }
    // A stand-alone tokenizer gives the same ids.
    try (Tokenizer own = Tokenizer.load(Fixtures.qwen2Tied())) {
      assertArrayEquals(tok.encode("Hello world"), own.encode("Hello world"));
    }
  }

  @Test
  void generateStreamsTokensAndStopsFromTheCallback() {
    List<Token> seen = new ArrayList<>();
    SamplingOptions opts = SamplingOptions.builder().temperature(0).maxNewTokens(32).ignoreEos(true).build();
    Completion c = tiny.generate("The answer is", opts, t -> {
      seen.add(t);
      return seen.size() < 5;  // stop after the 5th token
    });
    assertEquals(FinishReason.STOPPED, c.finishReason());
    assertEquals(5, seen.size());
    assertEquals(5, c.tokenIds().length);
    for (int i = 0; i < 5; i++) {
      assertEquals(c.tokenIds()[i], seen.get(i).id());
      assertEquals(c.logprobs()[i], seen.get(i).logprob(), 1e-6);
      assertEquals(0, seen.get(i).request());
    }
    StringBuilder text = new StringBuilder();
    seen.forEach(t -> text.append(t.text()));
    assertEquals(c.text(), text.toString());

    // Without stopping: max_new_tokens ends it.
    Completion full = tiny.generate("The answer is", opts);
    assertEquals(FinishReason.LENGTH, full.finishReason());
    assertEquals(32, full.tokenIds().length);
    assertArrayEquals(c.tokenIds(), java.util.Arrays.copyOf(full.tokenIds(), 5));
  }

  @Test
  void batchGenerationReportsTheRequestOfEachToken() {
    int[] counts = new int[3];
    SamplingOptions opts = SamplingOptions.builder().temperature(0.8f).seed(11).maxNewTokens(8).ignoreEos(true).build();
    List<Completion> cs = tiny.generate(List.of("a", "bb", "ccc"), opts, t -> {
      counts[(int) t.request()]++;
      return true;
    });
    assertEquals(3, cs.size());
    for (int i = 0; i < 3; i++) assertEquals(cs.get(i).tokenIds().length, counts[i]);
  }

  @Test
  void aListenerThatThrowsStopsGenerationAndTheExceptionIsRethrown() {
    SamplingOptions opts = SamplingOptions.builder().temperature(0).maxNewTokens(32).ignoreEos(true).build();
    int[] calls = {0};
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> tiny.generate("x", opts, t -> {
      if (++calls[0] == 3) throw new IllegalArgumentException("listener failed on purpose");
      return true;
    }));
    assertEquals("listener failed on purpose", e.getMessage());
    assertEquals(3, calls[0]);  // no call after the throw
    // A checked exception comes back wrapped, with status CANCELLED.
    ReasonException re = assertThrows(ReasonException.class, () -> tiny.generate("x", opts, t -> {
      throw new IOException("client went away");
    }));
    assertEquals(ReasonStatus.CANCELLED, re.status());
    assertTrue(re.getCause() instanceof IOException);
    // The model is fine afterwards.
    assertEquals(32, tiny.generate("x", opts).tokenIds().length);
  }

  @Test
  void pullStreamGivesTheSameTokensAsTheCallback() {
    SamplingOptions opts = SamplingOptions.builder().temperature(0.7f).seed(3).maxNewTokens(24).build();
    List<Integer> pushed = new ArrayList<>();
    Completion c = tiny.generate("Once upon a time", opts, t -> pushed.add(t.id()));
    List<Integer> pulled = new ArrayList<>();
    try (TokenStream s = tiny.stream("Once upon a time", opts)) {
      assertNull(s.finishReason());
      for (Token t : s) pulled.add(t.id());
      assertEquals(c.finishReason(), s.finishReason());
      assertEquals(c.text(), s.text());
      assertFalse(s.hasNext());
      assertThrows(NoSuchElementException.class, s::next);
      assertThrows(IllegalStateException.class, s::iterator);
    }
    assertEquals(pushed, pulled);
  }

  @Test
  void closingAStreamEarlyStopsIt() {
    SamplingOptions opts = SamplingOptions.builder().temperature(0).maxNewTokens(200).ignoreEos(true).build();
    TokenStream s = tiny.stream("abc", opts);
    assertTrue(s.hasNext());
    s.next();
    s.close();
    s.close();
    assertFalse(s.hasNext());
    assertEquals(FinishReason.STOPPED, s.finishReason());
  }

  @Test
  void scoreMatchesTheLogprobsOfGreedyGeneration() {
    Tokenizer tok = tiny.tokenizer();
    int[] prompt = tok.encode("The answer is");
    Completion c = tiny.generateIds(List.of(prompt), SamplingOptions.greedy(12), null).get(0);
    int n = c.tokenIds().length;
    assertTrue(n > 0);
    int[] all = new int[prompt.length + n];
    System.arraycopy(prompt, 0, all, 0, prompt.length);
    System.arraycopy(c.tokenIds(), 0, all, prompt.length, n);
    float[] lp = tiny.score(all);
    assertEquals(all.length - 1, lp.length);
    for (float v : lp) assertTrue(v <= 0 && Float.isFinite(v));
    for (int i = 0; i < n; i++) assertEquals(c.logprobs()[i], lp[prompt.length - 1 + i], 1e-3, "token " + i);
    ReasonException e = assertThrows(ReasonException.class, () -> tiny.score(new int[] {1}));
    assertEquals(ReasonStatus.INVALID_ARGUMENT, e.status());
  }

  @Test
  void grpoStepWithAJavaRewardThenCheckpoint(@TempDir Path tmp) {
    String gold = "68";
    RewardFunction boxed = (prompt, completion, answer) -> completion.contains("\\boxed{" + answer + "}") ? 1 : 0;
    // A model of its own: the step changes the weights in place.
    try (Model policy = Model.load(Fixtures.additionBase());
        Trainer trainer = Trainer.create(policy, "optimizer { lr: 1e-3 } grpo { group_size: 4 }")) {
      Tokenizer tok = policy.tokenizer();
      int[] prompt = tok.encode(Fixtures.ADDITION_PROMPT, true);
      // One group: greedy (answers correctly) plus three samples.
      List<Completion> group = new ArrayList<>();
      group.add(policy.generateIds(List.of(prompt), SamplingOptions.greedy(48), null).get(0));
      // top-k keeps samples inside the tokenizer's vocabulary (the embedding has spare rows).
      SamplingOptions hot = SamplingOptions.builder().temperature(1.2f).topK(8).seed(5).maxNewTokens(48).build();
      group.addAll(policy.generateIds(List.of(prompt, prompt, prompt), hot, null));
      assertTrue(group.get(0).text().contains("\\boxed{68}"), group.get(0).text());

      List<int[]> ids = new ArrayList<>();
      group.forEach(c -> ids.add(c.tokenIds()));
      Rewards.Result r = Rewards.compute(tok, ids, List.of(gold, gold, gold, gold), boxed);
      assertEquals(0, r.failed());
      assertEquals(4, r.rewards().length);
      assertEquals(1.0f, r.rewards()[0]);
      for (int i = 0; i < 4; i++) {
        assertEquals(group.get(i).text().contains("\\boxed{68}") ? 1f : 0f, r.rewards()[i]);
        assertEquals(Rewards.mathAccuracy(group.get(i).text(), gold), r.rewards()[i]);
      }
      // Rewards differ within the group, or the step has no signal: make sure of it.
      float[] rewards = r.rewards().clone();
      if (rewards[1] == 1f && rewards[2] == 1f && rewards[3] == 1f) rewards[3] = 0f;

      List<GrpoSample> batch = new ArrayList<>();
      for (int i = 0; i < 4; i++) batch.add(GrpoSample.of(prompt, group.get(i), rewards[i]));
      StepMetrics m = trainer.grpoStep(batch);
      assertEquals(1, m.step());
      assertTrue(Float.isFinite(m.loss()));
      assertTrue(m.gradNorm() > 0, "grad norm " + m.gradNorm());
      float mean = (rewards[0] + rewards[1] + rewards[2] + rewards[3]) / 4;
      assertEquals(mean, m.rewardMean(), 1e-5);

      Path ckpt = tmp.resolve("ckpt");
      trainer.save(ckpt);
      assertTrue(Files.isDirectory(ckpt));
      assertTrue(Files.exists(ckpt.resolve("model.safetensors")));
      trainer.loadState(ckpt);
      try (Model back = Model.load(ckpt)) {
        assertEquals(policy.info().numParams(), back.info().numParams());
        // The checkpoint holds the updated policy: same greedy output as the live model.
        assertEquals(policy.generate(Fixtures.ADDITION_PROMPT, SamplingOptions.greedy(48)).text(),
            back.generate(Fixtures.ADDITION_PROMPT, SamplingOptions.greedy(48)).text());
      }
    }
  }

  @Test
  void rewardExceptionsAreFailedRewardsNotCrashes() {
    Tokenizer tok = tiny.tokenizer();
    List<int[]> ids = List.of(tok.encode("a"), tok.encode("b"), tok.encode("c"));
    Rewards.Result r = Rewards.compute(tok, ids, null, (p, c, a) -> {
      if (c.equals("b")) throw new IllegalStateException("bad completion");
      return c.equals("c") ? Double.NaN : 0.5;
    });
    assertArrayEquals(new float[] {0.5f, 0f, 0f}, r.rewards());
    assertEquals(2, r.failed());
    assertEquals(1, r.errors().size());
    assertEquals("bad completion", r.errors().get(0).getMessage());
  }

  @Test
  void sftStep() {
    try (Model m = Model.load(Fixtures.qwen2Tied()); Trainer t = Trainer.create(m, "optimizer { lr: 1e-3 }")) {
      int[] ids = m.tokenizer().encode("User: hi\nAssistant: hello there");
      boolean[] mask = new boolean[ids.length];
      for (int i = ids.length / 2; i < ids.length; i++) mask[i] = true;
      StepMetrics s = t.sftStep(List.of(ids), List.of(mask));
      assertEquals(1, s.step());
      assertTrue(s.loss() > 0 && Float.isFinite(s.loss()));
      assertThrows(ReasonException.class, () -> t.sftStep(List.of(ids), List.of(new boolean[1])));
    }
  }

  /**
   * A PEFT adapter (tests/fixtures/lora) run with its base: it changes the scores, a trainer trains
   * it, saveAdapter writes it in PEFT's format, and that directory loads as base + adapter.
   */
  @Test
  void loraAdapterLoadsTrainsAndSaves(@TempDir Path tmp) {
    String adapter = Fixtures.root().resolve("lora/qwen2_tied_all_linear/adapter").toString();
    int[] seq = {11, 12, 13, 201, 202, 203, 204};
    try (Model plain = Model.load(Fixtures.qwen2Tied());
        Model m = Model.load(Fixtures.qwen2Tied(), "f32", "cpu", "auto", "none", adapter)) {
      assertEquals(14, m.info().adapterModules());
      assertEquals(0, plain.info().adapterModules());
      assertTrue(plain.score(seq)[3] != m.score(seq)[3], "the adapter changes the scores");
      boolean[] mask = {false, false, false, true, true, true, true};
      float first;
      float last;
      try (Trainer t = Trainer.create(m, "optimizer { lr: 0.01 }")) {
        first = t.sftStep(List.of(seq), List.of(mask)).loss();
        for (int i = 0; i < 9; i++) t.sftStep(List.of(seq), List.of(mask));
        last = t.sftStep(List.of(seq), List.of(mask)).loss();
      }
      assertTrue(last < first, first + " -> " + last);
      String dir = tmp.resolve("adapter").toString();
      m.saveAdapter(dir);
      assertTrue(Files.exists(tmp.resolve("adapter/adapter_model.safetensors")));
      ReasonException e = assertThrows(ReasonException.class, () -> plain.saveAdapter(dir));
      assertTrue(e.detail().contains("has no LoRA adapter"), e.detail());
      try (Model back = Model.load(dir)) {  // an adapter directory: its base + it
        assertEquals(14, back.info().adapterModules());
        assertArrayEquals(m.score(seq), back.score(seq));
      }
    }
  }

  @Test
  void badModelPathIsAReasonExceptionNamingThePath(@TempDir Path tmp) {
    String missing = tmp.resolve("no-such-model").toString();
    ReasonException e = assertThrows(ReasonException.class, () -> Model.load(missing));
    assertEquals(ReasonStatus.IO, e.status());
    assertEquals(2, e.code());
    assertEquals("REASON_ERR_IO", e.statusName());
    assertTrue(e.detail().contains(missing), e.detail());
    assertTrue(e.getMessage().startsWith("REASON_ERR_IO: "), e.getMessage());
    ReasonException d = assertThrows(ReasonException.class, () -> Model.load(Fixtures.qwen2Tied(), "f64"));
    assertEquals(ReasonStatus.INVALID_ARGUMENT, d.status());
    ReasonException t = assertThrows(ReasonException.class, () -> Tokenizer.load(missing));
    assertTrue(t.detail().contains("no-such-model"), t.detail());
    ReasonException c = assertThrows(ReasonException.class, () -> Trainer.create(tiny, "optimizer { lr: "));
    assertEquals(ReasonStatus.INVALID_ARGUMENT, c.status(), c.getMessage());
  }

  @Test
  void closedObjectsThrowAndCloseOrderDoesNotMatter() {
    Model m = Model.load(Fixtures.qwen2Tied());
    Tokenizer tok = m.tokenizer();
    TokenStream s = m.stream("abc", SamplingOptions.builder().temperature(0).maxNewTokens(16).ignoreEos(true).build());
    Trainer t = Trainer.create(m, "optimizer { lr: 1e-3 }");
    m.close();
    m.close();  // idempotent
    assertTrue(m.isClosed());
    assertThrows(IllegalStateException.class, () -> m.generate("x", null));
    assertThrows(IllegalStateException.class, m::tokenizer);
    assertThrows(IllegalStateException.class, () -> tok.encode("x"));
    assertThrows(IllegalStateException.class, () -> Trainer.create(m, "optimizer { lr: 1e-3 }"));
    // The stream and the trainer keep the native model alive: both still work.
    int n = 0;
    for (Token ignored : s) n++;
    assertEquals(16, n);
    int[] ids = {1, 2, 3, 4};
    assertEquals(1, t.sftStep(List.of(ids), List.of(new boolean[] {false, true, true, true})).step());
    t.close();
    s.close();
    assertThrows(IllegalStateException.class, () -> t.save("/tmp/never"));
  }

  @Test
  void uncheckedIoFromAListenerPropagates() {
    assertThrows(UncheckedIOException.class, () -> tiny.generate("x", SamplingOptions.greedy(4), t -> {
      throw new UncheckedIOException(new IOException("x"));
    }));
    assertNotNull(tiny.generate("x", SamplingOptions.greedy(4)));
  }
}
