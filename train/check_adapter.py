"""Checks that the engine applies an adapter as PyTorch does: greedy tokens of the
transformers model with the exported adapter (read back from the safetensors file, not
from the trainer) next to `anote generate` with the same adapter, on the same prompt.

usage: check_adapter.py --model M.gguf --adapter A.safetensors --anote target/release/anote
"""
import argparse
import json
import os
import subprocess

import torch
from safetensors import safe_open

from train import TARGETS

# The extractor's prompt for a two-type schema (src/ner/prompts/guidelines.txt, rendered).
PROMPT = (
    "Task: annotate the text with entities of the types below. Answer with one line per entity, in text order, "
    "as TYPE: exact text from the text. End with an empty line.\n\nSpan rules: mark the shortest span that names "
    "the thing.\nTypes:\n- PERSON: Names of people.\n- CITY: Names of cities.\n\nText:\n"
    "Yesterday Maria Lopez met John Smith in Paris.\nEntities:\n"
)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--adapter", required=True)
    ap.add_argument("--anote", required=True)
    ap.add_argument("--prompt", default=PROMPT)
    ap.add_argument("--tokens", type=int, default=12)
    a = ap.parse_args()
    from transformers import AutoModelForCausalLM

    d, f = os.path.split(os.path.abspath(a.model))
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
    with safe_open(a.adapter, "pt") as st, torch.no_grad():
        for i, layer in enumerate(model.model.layers):
            for mod, stem in TARGETS.items():
                lin = layer.get_submodule(mod)
                delta = st.get_tensor(f"blk.{i}.{stem}.lora_b").float() @ st.get_tensor(f"blk.{i}.{stem}.lora_a").float()
                lin.weight += delta
    ids = subprocess.run([a.anote, "--model", a.model, "tokenize", "--ids", a.prompt], check=True,
                         capture_output=True, text=True).stdout.split()
    ids = [2] + [int(i) for i in ids]
    out = []
    with torch.no_grad():
        x = torch.tensor([ids])
        for _ in range(a.tokens):
            nxt = int(model(input_ids=x).logits[0, -1].argmax())
            out.append(nxt)
            x = torch.cat([x, torch.tensor([[nxt]])], 1)
    ours = json.loads(subprocess.run([a.anote, "--model", a.model, "--adapter", a.adapter, "generate", "--json",
                                      "--max-tokens", str(a.tokens), "--prompt", a.prompt],
                                     check=True, capture_output=True, text=True).stdout)["tokens"]
    base = json.loads(subprocess.run([a.anote, "--model", a.model, "--adapter", "none", "generate", "--json",
                                      "--max-tokens", str(a.tokens), "--prompt", a.prompt],
                                     check=True, capture_output=True, text=True).stdout)["tokens"]
    same = next((i for i, (p, q) in enumerate(zip(out, ours)) if p != q), len(out))
    print(json.dumps({"pytorch": out, "anote": ours, "anote_base": base, "identical_prefix": same}))
    raise SystemExit(0 if same >= a.tokens // 2 and ours != base else 1)


if __name__ == "__main__":
    main()
