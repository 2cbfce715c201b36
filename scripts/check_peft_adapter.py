#!/usr/bin/env python3
"""Check that PEFT opens an adapter the engine wrote and computes the engine's numbers.

Developers only (needs torch, transformers and peft, e.g. /work/venv; never run by CI):

    /work/venv/bin/python scripts/check_peft_adapter.py BASE_DIR ADAPTER_DIR [REASON_CLI] [TEXT]

BASE_DIR is a Hugging Face model directory, ADAPTER_DIR a PEFT adapter directory (e.g. a pipeline
`lora` stage's stages/NN-NAME/final/, or `reason_model_save_adapter`'s output). Loads
`PeftModel.from_pretrained(base, ADAPTER_DIR)` (f32, eager attention), scores TEXT's tokens, runs
`reason score --model BASE_DIR --adapter ADAPTER_DIR --text TEXT` and prints the largest
difference of the per-token logprobs; exits 1 above 1e-4.
"""

import json
import subprocess
import sys

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        return 2
    base_dir, adapter_dir = sys.argv[1], sys.argv[2]
    cli = sys.argv[3] if len(sys.argv) > 3 else "build/sdk/cli/reason"
    text = sys.argv[4] if len(sys.argv) > 4 else "User: What is 347 + 589?\nAssistant: <think> 7 + 9 = 16, carry 1."
    out = subprocess.run([cli, "score", "--model", base_dir, "--adapter", adapter_dir, "--text", text],
                         check=True, capture_output=True, text=True).stdout
    engine = json.loads(out)["tokens"]
    tok = AutoTokenizer.from_pretrained(base_dir)
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32, attn_implementation="eager")
    model = PeftModel.from_pretrained(base, adapter_dir).eval()
    ids = [t["id"] for t in engine]
    first = tok(text, add_special_tokens=True)["input_ids"][0]
    seq = torch.tensor([[first] + ids])
    with torch.no_grad():
        lp = torch.log_softmax(model(input_ids=seq).logits[0, :-1].float(), dim=-1)
    peft_lp = lp.gather(-1, seq[0, 1:].unsqueeze(-1)).squeeze(-1).tolist()
    worst = max(abs(a - t["logprob"]) for a, t in zip(peft_lp, engine))
    n_adapted = sum(1 for n, _ in model.named_parameters() if "lora_A" in n)
    print(f"{len(ids)} tokens, {n_adapted} adapted modules: max |PEFT - engine| logprob = {worst:.2e}")
    return 0 if worst <= 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
