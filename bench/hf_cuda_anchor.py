#!/usr/bin/env python3
"""Hugging Face transformers (PyTorch eager, CUDA, bf16) on the same GGUF, prompt ids and token
count as `anote generate --json`: the anchor for the native WebGPU rows on a machine with a CUDA GPU
(docs/benchmarks.md), where no browser runs wllama's WebGPU build.

usage: hf_cuda_anchor.py MODEL IDS_FILE NTOK  (IDS_FILE: one prompt per line, space-separated
token ids with BOS, e.g. from `anote tokenize --ids`)  -> one JSON line
"""
import json
import os
import sys
import time

import torch
from transformers import AutoModelForCausalLM

model_path, ids_file, ntok = sys.argv[1], sys.argv[2], int(sys.argv[3])
directory, name = os.path.split(os.path.abspath(model_path))
model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, dtype=torch.bfloat16).cuda().eval()
prompts = [[int(t) for t in line.split()] for line in open(ids_file) if line.strip()]


@torch.no_grad()
def run(ids):
    x = torch.tensor([ids], device="cuda")
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = model(input_ids=x, use_cache=True)
    nxt = out.logits[:, -1].argmax(-1, keepdim=True)
    torch.cuda.synchronize()
    t1 = time.perf_counter()
    for _ in range(ntok - 1):
        out = model(input_ids=nxt, past_key_values=out.past_key_values, use_cache=True)
        nxt = out.logits[:, -1].argmax(-1, keepdim=True)
    torch.cuda.synchronize()
    t2 = time.perf_counter()
    return {"prompt_tokens": len(ids), "prefill_tok_s": len(ids) / (t1 - t0), "decode_steps": ntok - 1,
            "decode_tok_s": (ntok - 1) / (t2 - t1)}


run(prompts[0])  # warm-up: CUDA context and kernel selection
print(json.dumps({"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                  "runs": [run(p) for p in prompts]}))
