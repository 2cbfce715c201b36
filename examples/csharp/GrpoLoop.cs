// A GRPO loop in C# with a reward written in C#: sample G completions per addition problem, score
// each with the reward below (1 when the \boxed{} answer equals a + b), and take one GRPO step
// with the sampling logprobs as the old policy's. The trainer updates the model in place, so the
// next step samples from the new policy.
//
// Usage:  mono grpo-loop.exe MODEL_DIR [STEPS] [--save DIR]
//   MODEL_DIR: a model of the synthetic addition task, e.g. tests/fixtures/pipeline/addition-base
// Build:  mcs -out:grpo-loop.exe $(pkg-config --libs libreason-cil) GrpoLoop.cs
// Run:    MONO_PATH=/usr/lib/cli/libreason mono grpo-loop.exe MODEL_DIR
using System;
using System.Collections.Generic;
using System.Linq;
using System.Text.RegularExpressions;
using LibReason;

static class GrpoLoop {
  const int PromptsPerStep = 2;
  const int GroupSize = 4;  // G completions per prompt
  const string Config = "optimizer { lr: 1e-3 } grpo { group_size: 4 }";

  // The reward: 1 when the last \boxed{...} of the completion is the right sum, else 0.
  static float Reward(string completion, int sum) {
    MatchCollection boxed = Regex.Matches(completion, @"\\boxed\{\s*(-?\d+)\s*\}");
    if (boxed.Count == 0) return 0f;
    return boxed[boxed.Count - 1].Groups[1].Value == sum.ToString() ? 1f : 0f;
  }

  static int Main(string[] args) {
    if (args.Length < 1) {
      Console.Error.WriteLine("usage: grpo-loop.exe MODEL_DIR [STEPS] [--save DIR]");
      return 2;
    }
    string modelDir = args[0];
    int steps = args.Length > 1 && !args[1].StartsWith("--") ? int.Parse(args[1]) : 5;
    int save = Array.IndexOf(args, "--save");
    string saveDir = save >= 0 && save + 1 < args.Length ? args[save + 1] : null;

    try {
      Console.WriteLine("libreason " + Library.Version + " (LibReason.dll " + Library.BindingVersion + ")");
      using (var model = new Model(modelDir))  // f32: the trainer's master weights
      using (var trainer = new Trainer(model, Config)) {
        Console.WriteLine("model: " + model.Info);
        Tokenizer tok = model.Tokenizer;
        var rng = new Random(2024);
        // Sampling at temperature 1, the GRPO config's temperature, so that the sampling logprobs
        // are the old policy's.
        var sampling = new SamplingOptions { Temperature = 1.0f, MaxNewTokens = 64 };
        var rewardsPerStep = new List<double>();

        for (int step = 1; step <= steps; ++step) {
          var batch = new List<GrpoSample>();
          int correct = 0;
          for (int p = 0; p < PromptsPerStep; ++p) {
            int a = rng.Next(10, 100), b = rng.Next(10, 100);
            int[] prompt = tok.Encode("User: What is " + a + " + " + b + "?\nAssistant:", true);
            sampling.Seed = step * 1000 + p * GroupSize;
            IReadOnlyList<Completion> group = model.GenerateIds(Enumerable.Repeat(prompt, GroupSize).ToList(), sampling);
            foreach (Completion c in group) {
              float r = Reward(c.Text, a + b);
              if (r > 0) ++correct;
              batch.Add(GrpoSample.FromCompletion(prompt, c, r));
            }
          }
          StepMetrics m = trainer.GrpoStep(batch);
          double mean = batch.Average(s => s.Reward);
          rewardsPerStep.Add(mean);
          Console.WriteLine(string.Format("step {0}/{1}  reward {2:F3}  ({3}/{4} correct)  loss {5:G4}  grad_norm {6:G4}",
                                          step, steps, mean, correct, batch.Count, m.Loss, m.GradNorm));
        }
        if (saveDir != null) {
          trainer.Save(saveDir);
          Console.WriteLine("saved " + saveDir);
        }
        Console.WriteLine(string.Format("grpo: {0} steps, reward first {1:F3} last {2:F3} mean {3:F3}", steps,
                                        rewardsPerStep.First(), rewardsPerStep.Last(), rewardsPerStep.Average()));
      }
      return 0;
    } catch (ReasonException e) {
      Console.Error.WriteLine("error: " + e.StatusName + ": " + e.Message);
      return 1;
    } catch (DllNotFoundException e) {  // libreason_csharp.so or libreason.so.0 not found
      Console.Error.WriteLine("error: " + e.Message);
      return 1;
    }
  }
}
