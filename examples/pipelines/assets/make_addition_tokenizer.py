#!/usr/bin/env python3
"""Builds the tokenizer of the embedded R1-Zero miniature (examples/pipelines/r1-zero-mini.textproto).

A byte-level BPE with the Qwen2 pre-tokenizer regex (every digit is its own token), trained with
Hugging Face `tokenizers` on text in the task's language (the same shapes the engine's synthetic
addition task writes: sdk/rl/synthetic_task.cpp), plus the added tokens <|endoftext|> (EOS and
padding), <think> and </think>. Output: addition-tokenizer/tokenizer.json and
tokenizer_config.json. Developer-only: the outputs are committed; CI never runs this.

    /work/venv/bin/python examples/pipelines/assets/make_addition_tokenizer.py
"""
import json
import os
import random

from tokenizers import Regex, Tokenizer, AddedToken, decoders, models, normalizers, pre_tokenizers, trainers

QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
               r"\s*[\r\n]+|\s+(?!\S)|\s+")
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "addition-tokenizer")
BPE_VOCAB = 320


def sample_text(rng):
    a, b = rng.randrange(10, 10000), rng.randrange(10, 10000)
    steps, c, x, y = [], 0, a, b
    while x or y:
        s = x % 10 + y % 10 + c
        steps.append(f"{x % 10}+{y % 10}+{c}={s}")
        c, x, y = s // 10, x // 10, y // 10
    return (f"A conversation between User and Assistant. The Assistant thinks step by step in "
            f"<think> </think> tags, then gives the final answer in \\boxed{{}}.\nUser: What is {a} + {b}?\n"
            f"Assistant: <think> {' '.join(steps)} so {a + b} </think> The answer is \\boxed{{{a + b}}}.")


def main():
    rng = random.Random(0)
    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    trainer = trainers.BpeTrainer(vocab_size=BPE_VOCAB, min_frequency=2, show_progress=False,
                                  special_tokens=[], initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([sample_text(rng) for _ in range(2000)], trainer=trainer)
    tok.add_special_tokens([AddedToken("<|endoftext|>", special=True, normalized=False)])
    tok.add_tokens([AddedToken("<think>", special=False, normalized=False),
                    AddedToken("</think>", special=False, normalized=False)])
    os.makedirs(OUT, exist_ok=True)
    tok.save(os.path.join(OUT, "tokenizer.json"))
    added = {}
    for t, special in (("<|endoftext|>", True), ("<think>", False), ("</think>", False)):
        added[str(tok.token_to_id(t))] = {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                                          "single_word": False, "special": special}
    cfg = {"add_bos_token": False, "add_prefix_space": False, "added_tokens_decoder": added, "bos_token": None,
           "clean_up_tokenization_spaces": False, "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
           "errors": "replace", "model_max_length": 512, "split_special_tokens": False,
           "tokenizer_class": "Qwen2Tokenizer", "unk_token": None}
    with open(os.path.join(OUT, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2, ensure_ascii=False)
        f.write("\n")
    enc = tok.encode(sample_text(random.Random(1)))
    print(f"vocab {tok.get_vocab_size()}; example: {len(enc.ids)} tokens")
    print(enc.tokens[:80])


if __name__ == "__main__":
    main()
