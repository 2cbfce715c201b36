package org.libreason;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Java callbacks called from several threads at once: a pipeline's reward function on the
 * library's reward worker threads, and token listeners of generations running on several Java
 * threads on one model. Run under AddressSanitizer by the binding_java_asan check (see
 * bindings/java/README.md).
 */
class ConcurrencyTest {

  @Test
  void pipelineCallsAJavaRewardFromWorkerThreads(@TempDir Path tmp) throws Exception {
    Path cfg = tmp.resolve("p.textproto");
    Files.writeString(cfg, "seed: 3\nthreads: 2\n"
        + "prompt_format { template: \"User: {prompt}\\nAssistant:\" }\n"
        + "models { name: \"policy\" path: \"" + Fixtures.additionBase() + "\" }\n"
        + "datasets { name: \"train\" synthetic { kind: PROBLEMS count: 64 } }\n"
        + "stages { name: \"rl\" grpo { model: \"policy\" dataset: \"train\" steps: 2 prompts_per_step: 2 "
        + "grpo { group_size: 4 } sampling { max_new_tokens: 64 } "
        + "reward { terms { callback: \"boxed\" } terms { callback: \"flaky\" weight: 0.5 } } } }\n");

    AtomicInteger calls = new AtomicInteger();
    AtomicInteger correct = new AtomicInteger();
    AtomicInteger running = new AtomicInteger();
    AtomicInteger maxRunning = new AtomicInteger();
    AtomicInteger flakyCalls = new AtomicInteger();
    List<Throwable> boxedErrors = java.util.Collections.synchronizedList(new ArrayList<>());
    Set<String> threads = ConcurrentHashMap.newKeySet();
    Thread testThread = Thread.currentThread();
    RewardFunction boxed = (prompt, completion, answer) -> {
      int now = running.incrementAndGet();
      maxRunning.accumulateAndGet(now, Math::max);
      try {
        calls.incrementAndGet();
        threads.add(Thread.currentThread().getName());
        assertFalse(Thread.currentThread() == testThread, "a reward ran on the calling thread");
        assertTrue(prompt.startsWith("What is "), prompt);
        assertFalse(answer.isEmpty());
        Thread.sleep(20);  // let the other worker overlap
        boolean ok = completion.contains("\\boxed{" + answer + "}");
        if (ok) correct.incrementAndGet();
        return ok ? 1.0 : 0.0;
      } catch (Throwable t) {
        boxedErrors.add(t);
        throw t;
      } finally {
        running.decrementAndGet();
      }
    };
    // Every other call throws: failed rewards (scored 0), never a crash.
    RewardFunction flaky = (prompt, completion, answer) -> {
      if (flakyCalls.incrementAndGet() % 2 == 0) throw new IllegalStateException("flaky reward");
      return 1.0;
    };
    Pipeline.Result r = Pipeline.fromConfig(cfg).reward("boxed", boxed).reward("flaky", flaky).run(tmp.resolve("out"));
    assertEquals(List.of(), boxedErrors);
    // 2 steps x 2 prompts x 4 completions, each scored by both rewards.
    assertEquals(16, calls.get());
    assertEquals(16, flakyCalls.get());
    assertTrue(maxRunning.get() >= 2, "reward calls never overlapped (max " + maxRunning.get() + ")");
    assertFalse(threads.isEmpty());
    assertTrue(correct.get() > 0, "the pretrained addition model never answered correctly");
    assertTrue(r.summaryJson().contains("\"reward_failures\""), r.summaryJson());
    assertEquals(8, r.rewardErrors().size());
    assertEquals("flaky reward", r.rewardErrors().get(0).getMessage());
    assertTrue(Files.exists(tmp.resolve("out/stages/00-rl/final/model.safetensors")));
    System.out.println("pipeline: " + calls.get() + " reward calls on threads " + threads + ", max "
        + maxRunning.get() + " at once, " + correct.get() + " correct");

    // Resuming the finished run calls nothing.
    Pipeline.fromConfig(cfg).reward("boxed", boxed).reward("flaky", flaky).run(tmp.resolve("out"));
    assertEquals(16, calls.get());

    // A config naming a callback nobody registered is refused before any work.
    ReasonException e = org.junit.jupiter.api.Assertions.assertThrows(ReasonException.class,
        () -> Pipeline.fromConfig(cfg).reward("boxed", boxed).run(tmp.resolve("out2")));
    assertTrue(e.detail().contains("callback 'flaky' is not registered"), e.detail());
  }

  /**
   * A Java tool that a pipeline's rollouts call at every "=" (raw tool, empty opening tag: the
   * pretrained addition model writes "=" in its worked sums): its answers and its exceptions reach
   * the completions the rewards score, and what it threw comes back in the result.
   */
  @Test
  void pipelineCallsAJavaToolFromLibraryThreads(@TempDir Path tmp) throws Exception {
    Path cfg = tmp.resolve("t.textproto");
    Files.writeString(cfg, "seed: 5\nthreads: 1\n"
        + "prompt_format { template: \"User: {prompt}\\nAssistant:\" }\n"
        + "models { name: \"policy\" path: \"" + Fixtures.additionBase() + "\" }\n"
        + "datasets { name: \"train\" synthetic { kind: PROBLEMS count: 64 } }\n"
        + "stages { name: \"rl\" grpo { model: \"policy\" dataset: \"train\" steps: 2 prompts_per_step: 2 "
        + "grpo { group_size: 4 } sampling { max_new_tokens: 64 } reward { terms { callback: \"seen\" } } "
        + "tools { callbacks: \"calc\" raw: true call_open: \"\" call_close: \"=\" result_open: \" [\" "
        + "result_close: \"] \" max_calls: 2 } } }\n");
    AtomicInteger calls = new AtomicInteger();
    AtomicInteger withResult = new AtomicInteger();
    AtomicInteger withError = new AtomicInteger();
    AtomicInteger completions = new AtomicInteger();
    Set<String> threads = ConcurrentHashMap.newKeySet();
    Thread testThread = Thread.currentThread();
    ToolFunction calc = args -> {
      threads.add(Thread.currentThread().getName());
      if (Thread.currentThread() == testThread) throw new AssertionError("a tool ran on the calling thread");
      if (calls.incrementAndGet() % 3 == 0) throw new IllegalArgumentException("bad expression");
      return "len " + args.length();
    };
    RewardFunction seen = (prompt, completion, answer) -> {
      completions.incrementAndGet();
      if (completion.contains(" [len ")) withResult.incrementAndGet();
      if (completion.contains(" [error: tool 'calc' failed: bad expression] ")) withError.incrementAndGet();
      return completion.length() % 3;
    };
    Pipeline.Result r = Pipeline.fromConfig(cfg).reward("seen", seen).tool("calc", calc).run(tmp.resolve("out"));
    System.out.println("pipeline tools: " + calls.get() + " calls on threads " + threads + "; of "
        + completions.get() + " completions " + withResult.get() + " read a result, " + withError.get() + " an error");
    assertEquals(16, completions.get());
    assertTrue(calls.get() >= 3, "the tool was called " + calls.get() + " times");
    assertTrue(withResult.get() > 0 && withError.get() > 0, withResult.get() + " / " + withError.get());
    assertEquals(calls.get() / 3, r.toolErrors().size());
    assertEquals("bad expression", r.toolErrors().get(0).getMessage());
    assertEquals(List.of(), r.rewardErrors());
    String metrics = Files.readString(tmp.resolve("out/stages/00-rl/metrics.jsonl"));
    assertEquals(2, metrics.split("\"tool_calls\":", -1).length - 1, metrics);

    // A config naming a tool nobody registered is refused before any work.
    ReasonException e = org.junit.jupiter.api.Assertions.assertThrows(ReasonException.class,
        () -> Pipeline.fromConfig(cfg).reward("seen", seen).run(tmp.resolve("out2")));
    assertTrue(e.detail().contains("tool callback 'calc' is not registered"), e.detail());
  }

  @Test
  void generateFromSeveralJavaThreadsWithListeners() throws Exception {
    final int threads = 4;
    final int rounds = 3;
    try (Model model = Model.load(Fixtures.qwen2Tied())) {
      SamplingOptions opts = SamplingOptions.builder().temperature(0.9f).maxNewTokens(24).ignoreEos(true).build();
      ExecutorService pool = Executors.newFixedThreadPool(threads);
      CountDownLatch start = new CountDownLatch(1);
      AtomicInteger streamed = new AtomicInteger();
      AtomicInteger stopped = new AtomicInteger();
      List<Future<Integer>> done = new ArrayList<>();
      for (int t = 0; t < threads; t++) {
        final int id = t;
        done.add(pool.submit(() -> {
          start.await();
          int tokens = 0;
          for (int round = 0; round < rounds; round++) {
            Thread me = Thread.currentThread();
            int[] mine = {0};
            // Thread `id` stops after id + 3 tokens in odd rounds.
            final int limit = (round % 2 == 1) ? id + 3 : Integer.MAX_VALUE;
            Completion c = model.generate("thread " + id + " round " + round, opts, tok -> {
              assertTrue(Thread.currentThread() == me, "listener ran on another thread");
              streamed.incrementAndGet();
              return ++mine[0] < limit;
            });
            assertEquals(c.tokenIds().length, mine[0]);
            if (limit != Integer.MAX_VALUE) {
              assertEquals(FinishReason.STOPPED, c.finishReason());
              assertEquals(limit, mine[0]);
              stopped.incrementAndGet();
            } else {
              assertEquals(24, mine[0]);
            }
            tokens += mine[0];
          }
          return tokens;
        }));
      }
      start.countDown();
      int total = 0;
      for (Future<Integer> f : done) total += f.get(300, TimeUnit.SECONDS);
      pool.shutdown();
      assertTrue(pool.awaitTermination(10, TimeUnit.SECONDS));
      assertEquals(total, streamed.get());
      assertEquals(threads, stopped.get());  // one odd round per thread
      int expected = 0;
      for (int id = 0; id < threads; id++) expected += 24 + (id + 3) + 24;
      assertEquals(expected, total);
    }
  }

  @Test
  void closingAModelWhileOtherThreadsGenerateIsSafe() throws Exception {
    Model model = Model.load(Fixtures.qwen2Tied());
    SamplingOptions opts = SamplingOptions.builder().temperature(0).maxNewTokens(64).ignoreEos(true).build();
    ExecutorService pool = Executors.newFixedThreadPool(3);
    CountDownLatch generating = new CountDownLatch(3);
    List<Future<String>> results = new ArrayList<>();
    for (int t = 0; t < 3; t++) {
      results.add(pool.submit(() -> {
        int[] n = {0};
        try {
          Completion c = model.generate("x", opts, tok -> {
            if (++n[0] == 1) generating.countDown();
            return true;
          });
          return "done " + c.tokenIds().length;
        } catch (IllegalStateException e) {
          generating.countDown();
          return "closed";
        }
      }));
    }
    assertTrue(generating.await(120, TimeUnit.SECONDS));
    model.close();  // the three calls in flight finish on the still-alive native model
    for (Future<String> f : results) assertEquals("done 64", f.get(120, TimeUnit.SECONDS));
    pool.shutdown();
    org.junit.jupiter.api.Assertions.assertThrows(IllegalStateException.class, () -> model.generate("x", opts));
  }
}
