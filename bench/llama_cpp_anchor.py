#!/usr/bin/env python3
"""Native llama.cpp on the same GGUF and prompt, for `cargo xtask bench` (optional: needs
llama-cpp-python, e.g. `pip install llama-cpp-python==0.3.36`, built from source).

usage: llama_cpp_anchor.py MODEL PROMPT_FILE NTOK THREADS  -> one JSON line
"""
import json
import resource
import sys
import time

import llama_cpp
import numpy as np
from llama_cpp import Llama

model, prompt_file, ntok, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
text = open(prompt_file, encoding="utf-8").read()
llm = Llama(model_path=model, n_ctx=1024, n_batch=512, n_threads=threads, n_threads_batch=threads, verbose=False)
runs = []
for i in (1, 2):
    ids = llm.tokenize(f"Run {i}. {text}".encode(), add_bos=True, special=False)
    llm.reset()
    t0 = time.perf_counter()
    llm.eval(ids)
    t1 = time.perf_counter()
    for _ in range(ntok - 1):
        # llm.scores is not filled without logits_all, which would slow the prefill down.
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1), shape=(llm.n_vocab(),))
        llm.eval([int(logits.argmax())])
    t2 = time.perf_counter()
    runs.append({"prompt_tokens": len(ids), "prefill_tok_s": len(ids) / (t1 - t0), "decode_steps": ntok - 1,
                 "decode_tok_s": (ntok - 1) / (t2 - t1)})
print(json.dumps({"runs": runs, "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
