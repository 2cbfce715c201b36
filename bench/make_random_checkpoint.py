#!/usr/bin/env python3
"""Writes a random-weight checkpoint of the Qwen2.5-0.5B (or, with --shape 1.5b, the Qwen2.5-1.5B =
DeepSeek-R1-Distill-Qwen-1.5B) shape as a Hugging Face directory.

  python bench/make_random_checkpoint.py OUT_DIR [--shape 0.5b|1.5b] [--seed 0] [--tokenizer-dir DIR]

The weights are random (normal init, std = initializer_range, fixed seed), so the model's
output is meaningless; only the shapes and dtypes matter: the benchmark measures speed, and
both engines read exactly the same bf16 tensors. The directory holds
  config.json             transformers v4 style (torch_dtype "bfloat16", top-level rope_theta)
  generation_config.json  as save_pretrained writes it
  model.safetensors       bf16, tied embeddings (no lm_head.weight), ~988 MB
  tokenizer.json, tokenizer_config.json   copied from the Qwen tokenizer fixtures, so that
                          llama.cpp's convert_hf_to_gguf.py recognises the Qwen2 pre-tokenizer.
The directory is written next to OUT_DIR and renamed into place, so an interrupted run never
leaves a half-written checkpoint that a later run would take as complete.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

# Qwen2.5-0.5B (https://huggingface.co/Qwen/Qwen2.5-0.5B/blob/main/config.json).
QWEN25_05B = {
    "architectures": ["Qwen2ForCausalLM"],
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "eos_token_id": 151643,
    "hidden_act": "silu",
    "hidden_size": 896,
    "initializer_range": 0.02,
    "intermediate_size": 4864,
    "max_position_embeddings": 32768,
    "max_window_layers": 24,
    "model_type": "qwen2",
    "num_attention_heads": 14,
    "num_hidden_layers": 24,
    "num_key_value_heads": 2,
    "rms_norm_eps": 1e-06,
    "rope_scaling": None,
    "rope_theta": 1000000.0,
    "sliding_window": 32768,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.40.1",
    "use_cache": True,
    "use_sliding_window": False,
    "vocab_size": 151936,
}

# Qwen2.5-1.5B (https://huggingface.co/Qwen/Qwen2.5-1.5B/blob/main/config.json); DeepSeek-R1-Distill-Qwen-1.5B
# has the same shapes (it unties nothing: tie_word_embeddings false there, so its LM head is a
# separate 151936 x 1536 matrix; Qwen2.5-1.5B ties it).
QWEN25_15B = dict(QWEN25_05B, hidden_size=1536, intermediate_size=8960, max_window_layers=21,
                  num_attention_heads=12, num_hidden_layers=28, num_key_value_heads=2)
SHAPES = {"0.5b": QWEN25_05B, "1.5b": QWEN25_15B}

# The Qwen tokenizer files committed as tests/fixtures/tokenizers/qwen3.tar.xz, unpacked on first use.
TOKENIZER_ARCHIVE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "tokenizers" / "qwen3.tar.xz"


def default_tokenizer_dir() -> Path:
    import tarfile
    import tempfile
    dest = Path(tempfile.gettempdir()) / "reason-bench-tokenizers"
    if not (dest / "qwen3" / "tokenizer.json").exists():
        with tarfile.open(TOKENIZER_ARCHIVE) as t:
            t.extractall(dest)
    return dest / "qwen3"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shape", choices=sorted(SHAPES), default="0.5b")
    ap.add_argument("--tokenizer-dir", type=Path,
                    default=Path(os.environ["REASON_QWEN_TOKENIZER_DIR"]) if "REASON_QWEN_TOKENIZER_DIR" in os.environ else None)
    ap.add_argument("--force", action="store_true", help="overwrite an existing OUT_DIR")
    args = ap.parse_args()

    if args.tokenizer_dir is None:
        args.tokenizer_dir = default_tokenizer_dir()
    out: Path = args.out_dir.resolve()
    if (out / "config.json").exists() and (out / "model.safetensors").exists() and not args.force:
        print(f"{out}: checkpoint exists (use --force to rewrite)")
        return 0
    for f in ("tokenizer.json", "tokenizer_config.json"):
        if not (args.tokenizer_dir / f).is_file():
            print(f"error: {args.tokenizer_dir / f} not found (pass --tokenizer-dir)", file=sys.stderr)
            return 2

    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    t0 = time.time()
    torch.manual_seed(args.seed)
    shape = SHAPES[args.shape]
    cfg_fields = {k: v for k, v in shape.items()
                  if k not in ("architectures", "torch_dtype", "transformers_version", "model_type")}
    config = Qwen2Config(**cfg_fields)
    model = Qwen2ForCausalLM(config)  # random init: normal(0, initializer_range), norms = 1, biases = 0
    model = model.to(torch.bfloat16).eval()
    n_params = sum(p.numel() for p in model.parameters())

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".tmp-", dir=out.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        # save_pretrained's config.json depends on the installed transformers version (v5 writes
        # "dtype" and "rope_parameters"); write the v4 form the real Qwen2.5 checkpoints have.
        (tmp / "config.json").write_text(json.dumps(shape, indent=2) + "\n")
        for f in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copyfile(args.tokenizer_dir / f, tmp / f)
        if not (tmp / "model.safetensors").is_file():
            raise RuntimeError(f"save_pretrained wrote no single model.safetensors: {sorted(os.listdir(tmp))}")
        os.chmod(tmp, 0o755)
        for f in tmp.iterdir():
            os.chmod(f, 0o644)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    size = (out / "model.safetensors").stat().st_size
    print(f"{out}: {n_params / 1e6:.1f}M parameters, model.safetensors {size / 1e6:.0f} MB, "
          f"seed {args.seed}, {time.time() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
