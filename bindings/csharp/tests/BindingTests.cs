// Tests of the C# binding (NUnit 2.6 under mono; ctest binding_csharp). Fixtures:
// tests/fixtures/dense/qwen2_tied (random 2-layer Qwen2: mechanics) and
// tests/fixtures/pipeline/addition-base (pretrained on the synthetic addition task: meaningful
// rewards). $LIBREASON_TEST_FIXTURES names the tests/fixtures folder.
using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text.RegularExpressions;
using System.Threading;
using LibReason;
using NUnit.Framework;

namespace LibReason.Tests {

[TestFixture]
public class BindingTests {
  static string Fixtures {
    get {
      string d = Environment.GetEnvironmentVariable("LIBREASON_TEST_FIXTURES");
      if (string.IsNullOrEmpty(d)) Assert.Fail("set LIBREASON_TEST_FIXTURES to tests/fixtures");
      return d;
    }
  }
  static string Tied { get { return Path.Combine(Fixtures, "dense", "qwen2_tied"); } }
  static string TiedR1Sampling { get { return Path.Combine(Fixtures, "dense", "qwen2_tied_r1_sampling"); } }
  static string AdditionBase { get { return Path.Combine(Fixtures, "pipeline", "addition-base"); } }
  const string AdditionPrompt = "User: What is 23 + 45?\nAssistant:";
  const string GrpoConfig = "optimizer { lr: 1e-3 } grpo { group_size: 4 }";

  Model model;  // qwen2_tied, shared by the tests that do not train
  string tmp;

  [TestFixtureSetUp]
  public void SetUp() {
    model = new Model(Tied);
    tmp = Path.Combine(Path.GetTempPath(), "libreason_csharp_" + System.Diagnostics.Process.GetCurrentProcess().Id);
    if (Directory.Exists(tmp)) Directory.Delete(tmp, true);
    Directory.CreateDirectory(tmp);
  }

  [TestFixtureTearDown]
  public void TearDown() {
    model.Dispose();
    if (Directory.Exists(tmp)) Directory.Delete(tmp, true);
  }

  // The boxed answer of a completion equals a + b.
  static float AdditionReward(string prompt, string completion, string answer) {
    MatchCollection ms = Regex.Matches(completion, @"\\boxed\{(-?\d+)\}");
    return ms.Count > 0 && ms[ms.Count - 1].Groups[1].Value == answer ? 1.0f : 0.0f;
  }

  [Test]
  public void SamplingDefaultsComeFromTheModelsGenerationConfig() {
    using (var m = new Model(TiedR1Sampling)) {
      SamplingOptions o = m.SamplingDefaults(new SamplingOptions { TopK = 7 });
      Assert.AreEqual(0.6f, o.Temperature);
      Assert.AreEqual(0.95f, o.TopP);
      Assert.AreEqual(7, o.TopK);
      Assert.AreEqual(256, o.MaxNewTokens);
    }
    SamplingOptions plain = model.SamplingDefaults();
    Assert.AreEqual(1.0f, plain.Temperature);
  }

  [Test]
  public void ThreadCountOfOneThreadLeavesTheOthersAlone() {
    Library.SetNumThreads(3);
    int own = 0, back = 0;
    var t = new System.Threading.Thread(() => {
      Library.SetThreadNumThreads(1);
      own = Library.NumThreads;
      Library.SetThreadNumThreads(0);
      back = Library.NumThreads;
    });
    t.Start();
    t.Join();
    Assert.AreEqual(1, own);
    Assert.AreEqual(3, back);
    Assert.AreEqual(3, Library.NumThreads);
    Library.SetNumThreads(0);
  }

  [Test]
  public void VersionsMatch() {
    Library.EnsureLoaded();
    Assert.AreEqual(Library.BindingVersion, Library.Version);
    StringAssert.EndsWith("libreason_csharp.so", Library.LoadedFrom);
    Assert.AreEqual(Library.BindingVersion,
                    typeof(Model).Assembly.GetName().Version.ToString(3));
  }

  [Test]
  public void AnotherMajorVersionIsRefusedWithAClearMessage() {
    int major = int.Parse(Library.BindingVersion.Split('.')[0]);
    Assert.IsNull(Library.CheckVersions(Library.BindingVersion, major, major));
    string m = Library.CheckVersions((major + 1) + ".0.0", major + 1, major);
    Assert.AreEqual("libreason native library " + (major + 1) + ".0.0 is not compatible with these bindings (built for " +
                    major + ".x; LibReason.dll " + Library.BindingVersion + ")", m);
    StringAssert.Contains("glue", Library.CheckVersions(Library.BindingVersion, major, major + 1));
  }

  [Test]
  public void QuantizedWeightsAtLoad() {
    string dir = Path.Combine(Fixtures, "quant", "llama256");
    using (var m = Model.Load(dir, "f32", "cpu", "auto", "q4_k")) {
      Assert.AreEqual("Q6_K", m.Info.QuantizedWeights);  // the tied embedding / LM head, as Q4_K_M
      var c = m.GenerateIds(new[] { new[] { 5, 17, 42, 99 } }, SamplingOptions.Greedy(5));
      Assert.Greater(c[0].TokenIds.Count, 0);
    }
    using (var m = Model.Load(dir)) Assert.AreEqual("", m.Info.QuantizedWeights);
    var bad = Assert.Throws<ReasonException>(() => Model.Load(dir, "f32", "cpu", "auto", "q3_k"));
    Assert.AreEqual(Status.InvalidArgument, bad.Status);
    StringAssert.Contains("q3_k", bad.Message);
  }

  [Test]
  public void DeviceAndKvDTypeAreChosenAtLoad() {
    Assert.AreEqual("cpu", model.Info.Device);
    Assert.AreEqual("f32", model.Info.KVDType);
    using (var m = new Model(Tied, "f32", "cpu", "bf16")) {
      Assert.AreEqual("cpu", m.Info.Device);
      Assert.AreEqual("bf16", m.Info.KVDType);
    }
    var bad = Assert.Throws<ReasonException>(() => Model.Load(Tied, "f32", "tpu", "auto"));
    Assert.AreEqual(Status.InvalidArgument, bad.Status);
    StringAssert.Contains("tpu", bad.Message);
    // CUDA runs where a GPU is usable; elsewhere it is Unsupported with the reason.
    try {
      using (var m = Model.Load(Tied, "f32", "cuda", "auto")) Assert.AreEqual("cuda", m.Info.Device);
    } catch (ReasonException e) {
      Assert.AreEqual(Status.Unsupported, e.Status);
      StringAssert.Contains("device cuda is not available", e.Message);
    }
  }

  [Test]
  public void ModelInfoAndTokenizerRoundTrip() {
    ModelInfo info = model.Info;
    Assert.AreEqual(2, info.NumLayers);
    Assert.AreEqual(512, info.VocabSize);
    Assert.Greater(info.NumParams, 0);
    Tokenizer tok = model.Tokenizer;
    Assert.AreSame(tok, model.Tokenizer);
    Assert.Greater(tok.VocabSize, 0);
    Assert.LessOrEqual(tok.VocabSize, info.VocabSize);
    foreach (string text in new[] { "Hello world, 1 + 2 = 3", "naïve café", "" }) {
      int[] ids = tok.Encode(text);
      Assert.AreEqual(text, tok.Decode(ids), "round trip of \"" + text + "\"");
    }
    Assert.Greater(tok.Encode("Hello world").Length, 0);
  }

  [Test]
  public void StandaloneTokenizerMatchesTheModels() {
    using (Tokenizer t = Tokenizer.Load(Tied)) {
      const string text = "The quick brown fox";
      CollectionAssert.AreEqual(model.Tokenizer.Encode(text), t.Encode(text));
    }
  }

  [Test]
  public void GenerateStreamsAndStopsFromTheCallback() {
    var streamed = new List<Token>();
    Completion c = model.Generate("The answer is", new SamplingOptions { Temperature = 0, MaxNewTokens = 32, IgnoreEos = true },
                                  (request, token) => {
                                    Assert.AreEqual(0, request);
                                    streamed.Add(token);
                                    return streamed.Count < 5;  // stop after the fifth token
                                  });
    Assert.AreEqual(FinishReason.Stopped, c.FinishReason);
    Assert.AreEqual(5, streamed.Count);
    CollectionAssert.AreEqual(streamed.Select(t => t.Id).ToArray(), c.TokenIds.ToArray());
    Assert.AreEqual(c.TokenIds.Count, c.Logprobs.Count);
    Assert.AreEqual(string.Concat(streamed.Select(t => t.Text)), c.Text);
    Assert.IsTrue(c.Logprobs.All(l => l <= 0 && !float.IsNaN(l)));

    Completion full = model.Generate("The answer is", new SamplingOptions { Temperature = 0, MaxNewTokens = 12, IgnoreEos = true });
    Assert.AreEqual(FinishReason.Length, full.FinishReason);
    Assert.AreEqual(12, full.TokenIds.Count);
    CollectionAssert.AreEqual(c.TokenIds.ToArray(), full.TokenIds.Take(5).ToArray(), "greedy is deterministic");
  }

  [Test]
  public void BatchCallbackSeesEveryRequest() {
    var counts = new int[3];
    IReadOnlyList<Completion> cs = model.Generate(new[] { "One", "Two two", "Three three three" },
                                                  new SamplingOptions { MaxNewTokens = 6, IgnoreEos = true, Seed = 7 },
                                                  (request, token) => {
                                                    counts[request]++;
                                                    return true;
                                                  });
    Assert.AreEqual(3, cs.Count);
    for (int i = 0; i < 3; ++i) {
      Assert.AreEqual(6, cs[i].TokenIds.Count);
      Assert.AreEqual(6, counts[i]);
    }
  }

  [Test]
  public void ExceptionInTheCallbackStopsAndIsRethrown() {
    int calls = 0;
    var e = Assert.Throws<InvalidOperationException>(() =>
        model.Generate("Hello", new SamplingOptions { MaxNewTokens = 20, IgnoreEos = true }, (r, t) => {
          if (++calls == 3) throw new InvalidOperationException("from the callback");
          return true;
        }));
    Assert.AreEqual("from the callback", e.Message);
    Assert.AreEqual(3, calls);
  }

  [Test]
  public void PullStreamEqualsCallbackTokens() {
    var opts = new SamplingOptions { Temperature = 0, MaxNewTokens = 16, IgnoreEos = true };
    var viaCallback = new List<Token>();
    Completion c = model.Generate("Once upon a time", opts, (r, t) => {
      viaCallback.Add(t);
      return true;
    });
    List<Token> pulled;
    TokenStream stream;
    using (stream = model.Stream("Once upon a time", opts)) {
      Assert.IsNull(stream.FinishReason);
      pulled = stream.ToList();
      Assert.AreEqual(FinishReason.Length, stream.FinishReason);
      Token extra;
      Assert.IsFalse(stream.TryNext(out extra));
    }
    Assert.AreEqual(16, pulled.Count);
    CollectionAssert.AreEqual(viaCallback.Select(t => t.Id).ToArray(), pulled.Select(t => t.Id).ToArray());
    CollectionAssert.AreEqual(viaCallback.Select(t => t.Text).ToArray(), pulled.Select(t => t.Text).ToArray());
    for (int i = 0; i < pulled.Count; ++i) Assert.AreEqual(viaCallback[i].Logprob, pulled[i].Logprob, 1e-4);
    Assert.AreEqual(c.Text, string.Concat(pulled.Select(t => t.Text)));
    Assert.Throws<InvalidOperationException>(() => stream.GetEnumerator());
  }

  [Test]
  public void LeavingAStreamEarlyStopsIt() {
    TokenStream s = model.Stream("Once upon a time", new SamplingOptions { MaxNewTokens = 200, IgnoreEos = true });
    int n = 0;
    foreach (Token t in s) {
      if (++n == 3) break;
    }
    Assert.AreEqual(3, n);
    Assert.AreEqual(FinishReason.Stopped, s.FinishReason);
    Token extra;
    Assert.Throws<ObjectDisposedException>(() => s.TryNext(out extra));
    s.Dispose();  // idempotent
  }

  [Test]
  public void ScoreMatchesGreedyLogprobs() {
    int[] prompt = model.Tokenizer.Encode("The answer is", true);
    Completion c = model.GenerateIds(new[] { prompt }, SamplingOptions.Greedy(8))[0];
    Assert.Greater(c.TokenIds.Count, 0);
    int[] ids = prompt.Concat(c.TokenIds).ToArray();
    float[] lp = model.Score(ids);
    Assert.AreEqual(ids.Length - 1, lp.Length);
    Assert.IsTrue(lp.All(v => v <= 0 && !float.IsNaN(v)));
    // Greedy logprobs are at temperature 1: the teacher-forced score of the same tokens.
    for (int i = 0; i < c.TokenIds.Count; ++i) Assert.AreEqual(c.Logprobs[i], lp[prompt.Length - 1 + i], 2e-3);
    var e = Assert.Throws<ReasonException>(() => model.Score(new[] { 1 }));
    Assert.AreEqual(Status.InvalidArgument, e.Status);
  }

  [Test]
  public void BadModelPathIsAReasonExceptionNamingThePath() {
    string bad = Path.Combine(tmp, "no-such-model");
    var e = Assert.Throws<ReasonException>(() => new Model(bad));
    StringAssert.Contains(bad, e.Message);
    Assert.AreEqual(Status.Io, e.Status);
    Assert.AreEqual("REASON_ERR_IO", e.StatusName);
    StringAssert.StartsWith("REASON_ERR_IO: ", e.ToString());
    Assert.Throws<ReasonException>(() => Tokenizer.Load(bad));
    Assert.Throws<ArgumentNullException>(() => new Model(null));
  }

  [Test]
  public void BadTrainerConfigNamesTheField() {
    using (var m = new Model(Tied))
    {
      var e = Assert.Throws<ReasonException>(() => new Trainer(m, "optimizer { no_such_field: 1 }"));
      StringAssert.Contains("no_such_field", e.Message);
    }
  }

  [Test]
  public void RewardLambdaAndOneGrpoStepThenCheckpoint() {
    using (var policy = new Model(AdditionBase))
    using (var trainer = new Trainer(policy, GrpoConfig)) {
      Tokenizer tok = policy.Tokenizer;
      int[] prompt = tok.Encode(AdditionPrompt, true);
      var opts = new SamplingOptions { Temperature = 1.0f, MaxNewTokens = 48, Seed = 11 };
      IReadOnlyList<Completion> group = policy.GenerateIds(Enumerable.Repeat(prompt, 4).ToList(), opts);
      Assert.AreEqual(4, group.Count);

      int calls = 0;
      Func<string, string, string, float> reward = (p, completion, answer) => {
        Interlocked.Increment(ref calls);
        return AdditionReward(p, completion, answer);
      };
      RewardBatch rewards = Rewards.Compute(tok, group.Select(c => c.TokenIds), Enumerable.Repeat("68", 4), reward);
      Assert.AreEqual(4, calls);
      Assert.AreEqual(0, rewards.Failed);
      Assert.IsNull(rewards.FirstError);
      for (int i = 0; i < 4; ++i) Assert.AreEqual(AdditionReward("", group[i].Text, "68"), rewards.Rewards[i], group[i].Text);
      // The pretrained base answers this one: the greedy completion is right.
      Completion greedy = policy.Generate(AdditionPrompt, SamplingOptions.Greedy(48));
      StringAssert.Contains("\\boxed{68}", greedy.Text);
      Assert.AreEqual(1.0f, Rewards.MathAccuracy(greedy.Text, "68"));

      var batch = group.Select((c, i) => GrpoSample.FromCompletion(prompt, c, rewards.Rewards[i])).ToList();
      StepMetrics m = trainer.GrpoStep(batch);
      Assert.AreEqual(1, m.Step);
      Assert.IsFalse(float.IsNaN(m.Loss));
      Assert.Greater(m.Tokens, 0);
      Assert.AreEqual(rewards.Rewards.Average(), m.RewardMean, 1e-5);

      // The policy was updated in place; it still generates.
      Assert.Greater(policy.Generate(AdditionPrompt, SamplingOptions.Greedy(8)).TokenIds.Count, 0);

      string ckpt = Path.Combine(tmp, "ckpt");
      trainer.Save(ckpt);
      Assert.IsTrue(File.Exists(Path.Combine(ckpt, "model.safetensors")));
      using (var reloaded = new Model(ckpt))
      using (var resumed = new Trainer(reloaded, GrpoConfig)) {
        resumed.LoadState(ckpt);
        Assert.AreEqual(policy.Info.NumParams, reloaded.Info.NumParams);
        CollectionAssert.AreEqual(policy.Generate(AdditionPrompt, SamplingOptions.Greedy(16)).TokenIds.ToArray(),
                                  reloaded.Generate(AdditionPrompt, SamplingOptions.Greedy(16)).TokenIds.ToArray());
      }
    }
  }

  [Test]
  public void ThrowingRewardIsCountedAsFailed() {
    Tokenizer tok = model.Tokenizer;
    var completions = new[] { tok.Encode("a"), tok.Encode("b c"), tok.Encode("d") };
    RewardBatch r = Rewards.Compute(tok, completions, null, (p, c, a) => {
      if (c == "b c") throw new ArgumentException("bad completion");
      return c == "a" ? float.NaN : 0.5f;
    });
    CollectionAssert.AreEqual(new[] { 0f, 0f, 0.5f }, r.Rewards);
    Assert.AreEqual(2, r.Failed);
    Assert.IsInstanceOf<ArgumentException>(r.FirstError);
  }

  [Test]
  public void LoraAdapterLoadsTrainsAndSaves() {
    // A PEFT adapter (tests/fixtures/lora) run with its base: it changes the scores, a trainer trains
    // it, SaveAdapter writes it in PEFT's format, and that directory loads as base + adapter.
    string adapter = Path.Combine(Fixtures, "lora", "qwen2_tied_all_linear", "adapter");
    int[] seq = { 11, 12, 13, 201, 202, 203, 204 };
    using (var plain = new Model(Tied))
    using (var m = new Model(Tied, "f32", "cpu", "auto", "none", adapter)) {
      Assert.AreEqual(14, m.Info.AdapterModules);
      Assert.AreEqual(0, plain.Info.AdapterModules);
      Assert.AreNotEqual(plain.Score(seq)[3], m.Score(seq)[3]);
      byte[] mask = { 0, 0, 0, 1, 1, 1, 1 };
      float first, last;
      using (var t = new Trainer(m, "optimizer { lr: 0.01 }")) {
        first = t.SftStep(new[] { seq }, new[] { mask }).Loss;
        for (int i = 0; i < 9; i++) t.SftStep(new[] { seq }, new[] { mask });
        last = t.SftStep(new[] { seq }, new[] { mask }).Loss;
      }
      Assert.Less(last, first);
      string dir = Path.Combine(tmp, "adapter");
      m.SaveAdapter(dir);
      Assert.IsTrue(File.Exists(Path.Combine(dir, "adapter_model.safetensors")));
      var e = Assert.Throws<ReasonException>(() => plain.SaveAdapter(dir));
      StringAssert.Contains("has no LoRA adapter", e.Message);
      using (var back = new Model(dir)) {  // an adapter directory: its base + it
        Assert.AreEqual(14, back.Info.AdapterModules);
        CollectionAssert.AreEqual(m.Score(seq), back.Score(seq));
      }
    }
  }

  [Test]
  public void SftStep() {
    using (var m = new Model(Tied))
    using (var t = new Trainer(m, "optimizer { lr: 1e-3 }")) {
      int[] ids = m.Tokenizer.Encode("Question: two plus two? Answer: four", true);
      byte[] mask = ids.Select((id, i) => (byte)(i >= ids.Length / 2 ? 1 : 0)).ToArray();
      StepMetrics s = t.SftStep(new[] { ids }, new[] { mask });
      Assert.AreEqual(1, s.Step);
      Assert.Greater(s.Loss, 0);
      var e = Assert.Throws<ReasonException>(() => t.SftStep(new[] { ids }, new[] { new byte[] { 1 } }));
      Assert.AreEqual(Status.InvalidArgument, e.Status);
    }
  }

  [Test]
  public void PipelineRunCallsTheCSharpRewardFromWorkerThreads() {
    string dir = Path.Combine(tmp, "pipeline");
    Directory.CreateDirectory(dir);
    string cfg = Path.Combine(dir, "p.textproto");
    File.WriteAllText(cfg,
        "seed: 3\nthreads: 1\n" +
        "prompt_format { template: \"User: {prompt}\\nAssistant:\" }\n" +
        "models { name: \"policy\" path: \"" + AdditionBase + "\" }\n" +
        "datasets { name: \"train\" synthetic { kind: PROBLEMS count: 64 } }\n" +
        "stages { name: \"rl\" grpo { model: \"policy\" dataset: \"train\" steps: 2 prompts_per_step: 2 " +
        "grpo { group_size: 4 } sampling { max_new_tokens: 64 } " +
        "reward { terms { kind: FORMAT } terms { callback: \"sum\" weight: 1.0 } } } }\n");
    int calls = 0, correct = 0, withAnswer = 0;
    var threads = new ConcurrentDictionary<int, bool>();
    int testThread = Thread.CurrentThread.ManagedThreadId;
    Func<string, string, string, float> sum = (prompt, completion, answer) => {
      Interlocked.Increment(ref calls);
      threads[Thread.CurrentThread.ManagedThreadId] = true;
      if (prompt.StartsWith("What is ") && answer.Length > 0) Interlocked.Increment(ref withAnswer);
      float r = AdditionReward(prompt, completion, answer);
      if (r > 0) Interlocked.Increment(ref correct);
      return r;
    };
    string summary = Pipeline.Run(cfg, Path.Combine(dir, "out"),
                                  new Dictionary<string, Func<string, string, string, float>> { { "sum", sum } });
    Assert.AreEqual(2 * 2 * 4, calls);  // steps x prompts_per_step x group_size
    Assert.AreEqual(calls, withAnswer);
    StringAssert.Contains("\"reward_failures\"", summary);
    Assert.IsFalse(threads.ContainsKey(testThread), "rewards run on worker threads");
    Assert.IsTrue(File.Exists(Path.Combine(dir, "out", "stages", "00-rl", "final", "model.safetensors")));
    Console.WriteLine("pipeline: " + calls + " reward calls on " + threads.Count + " thread(s), " + correct + " correct");

    // An unregistered callback is refused before any work, naming the config line.
    var e = Assert.Throws<ReasonException>(() => Pipeline.Run(cfg, Path.Combine(dir, "out2")));
    StringAssert.Contains("callback 'sum' is not registered", e.Message);
    Assert.IsFalse(Directory.Exists(Path.Combine(dir, "out2")));
  }

  [Test]
  public void PipelineRunCallsTheCSharpToolMidRollout() {
    // A raw tool called at every "=" (empty opening tag; the pretrained addition model writes "="
    // in its worked sums): its answers and its exceptions reach the completions the rewards score.
    string dir = Path.Combine(tmp, "tools");
    Directory.CreateDirectory(dir);
    string cfg = Path.Combine(dir, "t.textproto");
    File.WriteAllText(cfg,
        "seed: 5\nthreads: 1\n" +
        "prompt_format { template: \"User: {prompt}\\nAssistant:\" }\n" +
        "models { name: \"policy\" path: \"" + AdditionBase + "\" }\n" +
        "datasets { name: \"train\" synthetic { kind: PROBLEMS count: 64 } }\n" +
        "stages { name: \"rl\" grpo { model: \"policy\" dataset: \"train\" steps: 2 prompts_per_step: 2 " +
        "grpo { group_size: 4 } sampling { max_new_tokens: 64 } reward { terms { callback: \"seen\" } } " +
        "tools { callbacks: \"calc\" raw: true call_open: \"\" call_close: \"=\" result_open: \" [\" " +
        "result_close: \"] \" max_calls: 2 } } }\n");
    int calls = 0, completions = 0, withResult = 0, withError = 0;
    int testThread = Thread.CurrentThread.ManagedThreadId;
    Func<string, string> calc = args => {
      if (Thread.CurrentThread.ManagedThreadId == testThread) throw new InvalidOperationException("on the test thread");
      if (Interlocked.Increment(ref calls) % 3 == 0) throw new ArgumentException("bad expression");
      return "len " + System.Text.Encoding.UTF8.GetByteCount(args);
    };
    Func<string, string, string, float> seen = (prompt, completion, answer) => {
      Interlocked.Increment(ref completions);
      if (completion.Contains(" [len ")) Interlocked.Increment(ref withResult);
      if (completion.Contains(" [error: tool 'calc' failed: bad expression] ")) Interlocked.Increment(ref withError);
      return completion.Length % 3;
    };
    var rewards = new Dictionary<string, Func<string, string, string, float>> { { "seen", seen } };
    Pipeline.Run(cfg, Path.Combine(dir, "out"), rewards, false,
                 new Dictionary<string, Func<string, string>> { { "calc", calc } });
    Console.WriteLine("pipeline tools: " + calls + " calls; of " + completions + " completions " + withResult +
                      " read a result, " + withError + " an error");
    Assert.AreEqual(16, completions);
    Assert.GreaterOrEqual(calls, 3);
    Assert.Greater(withResult, 0);
    Assert.Greater(withError, 0);
    string metrics = File.ReadAllText(Path.Combine(dir, "out", "stages", "00-rl", "metrics.jsonl"));
    Assert.AreEqual(3, metrics.Split(new[] { "\"tool_calls\":" }, StringSplitOptions.None).Length, metrics);

    var e = Assert.Throws<ReasonException>(() => Pipeline.Run(cfg, Path.Combine(dir, "out2"), rewards));
    StringAssert.Contains("tool callback 'calc' is not registered", e.Message);
  }

  [Test]
  public void ConcurrentGenerationWithCallbacksFromManyThreads() {
    const int n = 4;
    var results = new Completion[n];
    var counts = new int[n];
    var errors = new ConcurrentQueue<Exception>();
    var ts = Enumerable.Range(0, n).Select(i => new Thread(() => {
      try {
        results[i] = model.Generate("Thread " + i, new SamplingOptions { MaxNewTokens = 10, IgnoreEos = true, Seed = i },
                                    (r, t) => { counts[i]++; return true; });
      } catch (Exception e) {
        errors.Enqueue(e);
      }
    })).ToList();
    ts.ForEach(t => t.Start());
    ts.ForEach(t => t.Join());
    CollectionAssert.IsEmpty(errors);
    for (int i = 0; i < n; ++i) {
      Assert.AreEqual(10, results[i].TokenIds.Count);
      Assert.AreEqual(10, counts[i]);
    }
  }

  [Test]
  public void DisposeRules() {
    var m = new Model(Tied);
    Tokenizer tok = m.Tokenizer;
    var t = new Trainer(m, GrpoConfig);
    TokenStream s = m.Stream("Hello", new SamplingOptions { MaxNewTokens = 4, IgnoreEos = true });
    m.Dispose();
    m.Dispose();  // idempotent
    Assert.Throws<ObjectDisposedException>(() => m.Generate("x"));
    Assert.Throws<ObjectDisposedException>(() => tok.Encode("x"));  // the model's tokenizer goes with it
    Assert.Throws<ObjectDisposedException>(() => new Trainer(m));
    // The stream and the trainer still hold the native model: they keep working until disposed.
    Assert.AreEqual(4, s.Count());
    t.Save(Path.Combine(tmp, "after-dispose"));
    t.Dispose();
    Assert.Throws<ObjectDisposedException>(() => t.Save(tmp));
  }

  [Test]
  public void FinalizersReleaseWhatWasNotDisposed() {
    for (int i = 0; i < 3; ++i) Leak();
    GC.Collect();
    GC.WaitForPendingFinalizers();
    GC.Collect();
    GC.WaitForPendingFinalizers();
    Assert.Greater(model.Generate("still fine", SamplingOptions.Greedy(2)).TokenIds.Count, 0);
  }

  static void Leak() {
    var m = new Model(Tied);
    var t = new Trainer(m, GrpoConfig);
    var s = m.Stream("Hello", new SamplingOptions { MaxNewTokens = 64, IgnoreEos = true });
    Token tok;
    s.TryNext(out tok);
    m.Tokenizer.Encode("x");
    GC.KeepAlive(t);
  }
}

}
