#!/usr/bin/env python3
"""PyTorch side of the training benchmark (bench/run_train_vs_torch.sh; see bench/README.md).

  python bench/train_bench_torch.py --make-model DIR [--seed 0]
  python bench/train_bench_torch.py --model DIR --threads N --mode sft|grpo --batch B \
      --seq-len T --steps S --warmup W [--lr 1e-5] [--data-seed 1234]

--make-model writes the random-weight ~25M-parameter Qwen2-shaped model (f32, tied embeddings,
Qwen2ForCausalLM(Qwen2Config(...)) with torch.manual_seed(SEED), save_pretrained) to DIR.
It goes next to DIR first and is renamed into place, so a half-written model never exists.

The benchmark runs the training step reason_train_bench (bench/train_bench.cpp) runs, on the CPU
in f32 with eager attention, and prints one JSON document on stdout:
  sft:  masked next-token cross-entropy (mean over the completion tokens: the first quarter of
        each sequence is prompt and carries no loss) + backward + clip_grad_norm_(1.0) + AdamW
  grpo: B samples = B/4 groups of 4, prompt T/4 + completion 3T/4 tokens; per-token logprobs at
        temperature 1 as TRL computes them (logits of the completion positions only,
        logits_to_keep, then log_softmax gathered at the completion tokens); advantages
        (r - mean) / (std + 1e-4) per group; TRL's clipped objective: ratio = exp(logp - old),
        -min(ratio A, clamp(ratio, 0.8, 1.28) A), mean over all completion tokens (token-level,
        "dapo"/"bnpo"); beta 0 (no reference model); backward, clip, AdamW.
AdamW: torch.optim.AdamW(lr, betas (0.9, 0.999), eps 1e-8, weight_decay 0), its default
(single-tensor, not fused) implementation on the CPU, as libreason's AdamW.

The batch is the same in both engines: token ids, GRPO rewards and the old-logprob noise come
from a counter-based splitmix64 generator (mix() below, the same function in train_bench.cpp), so
that the first step's loss can be compared across engines (JSON "first_loss"). The same batch is
used at every step. Old logprobs = this engine's logprobs of the batch before the first step
(no grad, not timed) + uniform noise in [-0.1, 0.1].

Timing: W warm-up steps, then S timed steps (each from the forward to the end of the optimizer
step, time.perf_counter). tokens/s = B * T / mean step time: every token forwarded counts,
prompt tokens included.
"""
import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

MASK64 = (1 << 64) - 1
GROUP = 4
NOISE = 0.1

# The ~25M-parameter Qwen2 shape (bench/README.md has the parameter count).
MODEL_SHAPE = dict(
    vocab_size=32768,
    hidden_size=384,
    intermediate_size=1024,
    num_hidden_layers=8,
    num_attention_heads=6,
    num_key_value_heads=2,
    max_position_embeddings=4096,
    rms_norm_eps=1e-6,
    tie_word_embeddings=True,
    initializer_range=0.02,
    attention_dropout=0.0,
)


def mix(x: int) -> int:
    """splitmix64's output function (bench/train_bench.cpp: mix())."""
    x = (x + 0x9E3779B97F4A7C15) & MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


def rnd(seed: int, stream: int, i: int) -> int:
    return mix(((seed * 0x100000001B3) ^ (stream << 48) ^ i) & MASK64)


def uniform(seed: int, stream: int, i: int) -> float:
    return (rnd(seed, stream, i) >> 11) * (1.0 / (1 << 53))


def make_batch(seed, B, T, V):
    """Token ids [B][T], GRPO rewards [B] and old-logprob noise [B][3T/4] (as float32 values)."""
    import numpy as np

    tokens = [[rnd(seed, 1, b * T + t) % V for t in range(T)] for b in range(B)]
    rewards = np.array([uniform(seed, 2, b) for b in range(B)], dtype=np.float32)
    C = T - T // 4
    noise = np.array([[(2.0 * uniform(seed, 3, b * C + t) - 1.0) * NOISE for t in range(C)] for b in range(B)],
                     dtype=np.float32)
    return tokens, rewards, noise


def make_model(out_dir: Path, seed: int) -> int:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    out_dir = out_dir.resolve()
    if (out_dir / "model.safetensors").exists():
        print(f"{out_dir}: already there", file=sys.stderr)
        return 0
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    cfg = Qwen2Config(**MODEL_SHAPE)
    model = Qwen2ForCausalLM(cfg).to(torch.float32)
    n = sum(p.numel() for p in model.parameters())  # tied: the embedding counts once
    tmp = Path(tempfile.mkdtemp(prefix=out_dir.name + ".", dir=out_dir.parent))
    model.save_pretrained(tmp)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.rename(tmp, out_dir)
    print(f"{out_dir}: Qwen2ForCausalLM {n} parameters (f32, seed {seed})", file=sys.stderr)
    return 0


def bench(args) -> int:
    import numpy as np
    import torch
    import torch.nn.functional as F
    from transformers import Qwen2ForCausalLM

    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    model = Qwen2ForCausalLM.from_pretrained(args.model, dtype=torch.float32, attn_implementation=args.attn)
    model.train()
    V = model.config.vocab_size
    B, T = args.batch, args.seq_len
    P = T // 4
    C = T - P
    if T < 8:
        raise SystemExit("--seq-len must be at least 8")
    if args.mode == "grpo" and B % GROUP:
        raise SystemExit(f"--batch must be a multiple of the group size {GROUP} for grpo")
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)

    tokens, rewards, noise = make_batch(args.data_seed, B, T, V)
    ids = torch.tensor(tokens, dtype=torch.long)
    if args.mode == "sft":
        labels = ids[:, 1:].clone()
        labels[:, : P - 1] = -100  # targets 1..P-1 are prompt tokens (mask 0)

        def loss_fn():
            logits = model(input_ids=ids, use_cache=False).logits[:, :-1, :]
            return F.cross_entropy(logits.reshape(-1, V), labels.reshape(-1), ignore_index=-100)
    else:
        completion = ids[:, P:]

        def logps():
            # TRL GRPOTrainer._get_per_token_logps_and_entropies: logits of the last C + 1
            # positions, drop the last, divide by the temperature, log-softmax at the completion ids.
            logits = model(input_ids=ids, use_cache=False, logits_to_keep=C + 1).logits
            logits = logits[:, :-1, :] / 1.0
            return torch.log_softmax(logits, dim=-1).gather(-1, completion.unsqueeze(-1)).squeeze(-1)

        r = torch.from_numpy(rewards).view(-1, GROUP)
        adv = ((r - r.mean(dim=1, keepdim=True)) / (r.std(dim=1, keepdim=True) + 1e-4)).reshape(-1, 1)
        with torch.no_grad():
            old = logps() + torch.from_numpy(noise)
        cmask = torch.ones(B, C)

        def loss_fn():
            logp = logps()
            ratio = torch.exp(logp - old)
            clipped = torch.clamp(ratio, 1 - 0.2, 1 + 0.28)
            per_token = -torch.min(ratio * adv, clipped * adv)
            return (per_token * cmask).sum() / cmask.sum().clamp(min=1.0)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return float(loss.detach())

    first_loss = None
    for _ in range(args.warmup):
        l = step()
        first_loss = l if first_loss is None else first_loss
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        l = step()
        times.append(time.perf_counter() - t0)
        first_loss = l if first_loss is None else first_loss
    mean = statistics.fmean(times)
    out = {
        "engine": "pytorch",
        "torch": torch.__version__,
        "mode": args.mode,
        "threads": args.threads,
        "batch": B,
        "seq_len": T,
        "steps": args.steps,
        "warmup": args.warmup,
        "params": n_params,
        "tokens_per_step": B * T,
        "ms_per_step": mean * 1e3,
        "ms_per_step_median": statistics.median(times) * 1e3,
        "ms_per_step_min": min(times) * 1e3,
        "ms_per_step_stddev": (statistics.stdev(times) * 1e3) if len(times) > 1 else 0.0,
        "tokens_per_s": B * T / mean,
        "first_loss": first_loss,
        "last_loss": l,
        "step_ms": [t * 1e3 for t in times],
    }
    print(json.dumps(out))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--make-model", type=Path, metavar="DIR", help="write the random model to DIR and exit")
    ap.add_argument("--seed", type=int, default=0, help="weight seed for --make-model")
    ap.add_argument("--model", type=str)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--mode", choices=["sft", "grpo"], default="sft")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-5)
    ap.add_argument("--data-seed", type=int, default=1234)
    ap.add_argument("--attn", choices=["eager", "sdpa"], default="eager",
                    help="transformers attention implementation (sdpa: PyTorch's fused scaled_dot_product_attention)")
    args = ap.parse_args()
    if args.make_model:
        return make_model(args.make_model, args.seed)
    if not args.model:
        ap.error("--model DIR is required (or --make-model DIR)")
    if args.steps < 1 or args.warmup < 0 or args.batch < 1 or args.threads < 1:
        ap.error("--steps >= 1, --warmup >= 0, --batch >= 1, --threads >= 1")
    return bench(args)


if __name__ == "__main__":
    sys.exit(main())
