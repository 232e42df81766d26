"""LoRA fine-tune of the base GGUF on rendered training sequences (CPU or CUDA).

Reads `anote render-training` output ({"ids", "answers"} per line), trains low-rank
adapters on the seven projections of every layer with the loss on answer tokens only,
stops at a wall-clock budget, checkpoints (and resumes), logs the loss per step, and
exports the adapter as f16 safetensors named after the GGUF tensors it modifies.

Speed choices (measured in shared/research/spike-finetune.md): bf16 autocast (1.65x) where
the hardware has bf16 arithmetic -- checked at start, because on a CPU without it (AVX2 only)
bf16 matmuls run 100x slower than f32 --, the frozen weights held in bf16 (1.14x on a 2-core
CPU), torch.compile for budgets of 20 minutes or more on CPU (1.5x more), the tied 262k-row
LM head applied at answer positions only, right padding with no attention mask (exact under
a causal mask), no dropout.
"""
import argparse
import hashlib
import json
import math
import os
import random
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

TARGETS = {  # HF module -> GGUF tensor stem
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
FINGERPRINT_TENSORS = ["output_norm.weight", "blk.0.attn_q.weight"]


class LoRA(torch.nn.Module):
    def __init__(self, base, rank, alpha):
        super().__init__()
        self.base = base
        self.scale = alpha / rank
        self.a = torch.nn.Parameter(torch.empty(rank, base.in_features))
        self.b = torch.nn.Parameter(torch.zeros(base.out_features, rank))
        torch.nn.init.kaiming_uniform_(self.a, a=math.sqrt(5))

    def forward(self, x):
        return self.base(x) + (x @ self.a.t() @ self.b.t()) * self.scale


def fingerprint(gguf_path):
    """What the adapter was trained on: sha256 over the raw bytes of two base tensors
    (the engine checks the same bytes at load)."""
    from gguf import GGUFReader

    r = GGUFReader(gguf_path)
    h = hashlib.sha256()
    by_name = {t.name: t for t in r.tensors}
    for n in FINGERPRINT_TENSORS:
        h.update(by_name[n].data.tobytes())
    return h.hexdigest()


def batches(seqs, batch, rng):
    """Length-bucketed batches: shuffle, sort pools of 16 batches by length."""
    order = list(range(len(seqs)))
    rng.shuffle(order)
    pool = batch * 16
    for i in range(0, len(order), pool):
        chunk = sorted(order[i : i + pool], key=lambda j: len(seqs[j]["ids"]))
        group = [chunk[k : k + batch] for k in range(0, len(chunk), batch)]
        rng.shuffle(group)
        yield from group


def bf16_is_faster(device):
    """Whether a bf16 matmul beats an f32 one here (a few milliseconds to find out)."""
    if device.type == "cuda":
        return True
    x = torch.randn(256, 256)
    seconds = {}
    for dtype in (torch.float32, torch.bfloat16):
        y = x.to(dtype)
        y @ y  # warm-up
        t0 = time.perf_counter()
        for _ in range(4):
            y @ y
        seconds[dtype] = time.perf_counter() - t0
    return seconds[torch.bfloat16] < seconds[torch.float32]


def frozen_in_bf16(model):
    """The frozen projections' weights converted to bf16 once, and a bf16 copy of the tied
    LM head: autocast caches its casts of trainable weights only, so it converted these
    again at every call (a fifth of a CPU step in torch.profiler). Autocast rounds them to the same values."""
    for layer in model.model.layers:
        for mod in TARGETS:
            base = layer.get_submodule(mod).base
            base.weight.data = base.weight.data.to(torch.bfloat16)
    return model.model.embed_tokens.weight.detach().to(torch.bfloat16)


# On a 2-core CPU, compiling takes two to five minutes and gives 1.5x the steps per second
# after it (it fuses the element-wise work); below this budget it would not pay.
COMPILE_FROM_MINUTES = 20


def compile_for(model, head, seqs, device, bf16):
    """torch.compile for any sequence length, the compiling done here, before the clock
    starts, so that the budget and the schedule count training alone: the shortest and the
    longest pair of sequences take both of the model's paths (shorter and longer than its
    sliding window); their gradients are cleared by the first step."""
    t0 = time.time()
    model.model.compile(dynamic=True)
    by_length = sorted(seqs, key=lambda s: len(s["ids"]))
    for pair in (by_length[:2], by_length[-2:]):
        loss_of(model, head, pair, device, bf16)[0].backward()
    print(f"compiled in {time.time() - t0:.0f} s", flush=True)


def loss_of(model, head, seqs, device, bf16):
    width = max(len(s["ids"]) for s in seqs)
    ids = torch.zeros(len(seqs), width, dtype=torch.long)
    rows, cols, targets = [], [], []
    for b, s in enumerate(seqs):
        ids[b, : len(s["ids"])] = torch.tensor(s["ids"])
        for r in s["answers"]:
            for p in range(r["start"], r["end"]):
                rows.append(b)
                cols.append(p - 1)
                targets.append(s["ids"][p])
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        hidden = model.model(input_ids=ids.to(device)).last_hidden_state
        picked = hidden[torch.tensor(rows, device=device), torch.tensor(cols, device=device)]
        logits = picked @ head.t()
    return torch.nn.functional.cross_entropy(logits.float(), torch.tensor(targets, device=device)), len(targets)


def export(model, path, rank, meta):
    tensors = {}
    for i, layer in enumerate(model.model.layers):
        for mod, stem in TARGETS.items():
            lora = layer.get_submodule(mod)
            # The scale is folded into B, so the engine adds x·Aᵀ·Bᵀ as is.
            tensors[f"blk.{i}.{stem}.lora_a"] = lora.a.detach().cpu().to(torch.float16).contiguous()
            tensors[f"blk.{i}.{stem}.lora_b"] = (lora.b.detach().cpu() * lora.scale).to(torch.float16).contiguous()
    save_file(tensors, str(path), metadata={k: str(v) for k, v in meta.items()})


def import_adapter(model, path):
    """The inverse of export: an exported adapter's factors as trainable LoRA weights (the
    scale folded into B is taken out again)."""
    from safetensors.torch import load_file

    t = load_file(path)
    with torch.no_grad():
        for i, layer in enumerate(model.model.layers):
            for mod, stem in TARGETS.items():
                lora = layer.get_submodule(mod)
                lora.a.copy_(t[f"blk.{i}.{stem}.lora_a"].float())
                lora.b.copy_(t[f"blk.{i}.{stem}.lora_b"].float() / lora.scale)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True, help="rendered sequences (JSONL)")
    ap.add_argument("--out", required=True, help="working folder: checkpoint, log")
    ap.add_argument("--adapter", required=True, help="where to write the f16 safetensors")
    ap.add_argument("--minutes", type=float, default=90)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--alpha", type=float, default=32)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="cpu, or cuda on a machine with a CUDA GPU")
    ap.add_argument("--export-only", action="store_true", help="export the last checkpoint and stop")
    ap.add_argument("--init", help="start from the LoRA weights of another run's checkpoint.pt, or of "
                    "an exported adapter (.safetensors, e.g. the shipped one); fresh optimizer and "
                    "schedule; a checkpoint in --out resumes instead")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)

    from transformers import AutoModelForCausalLM

    model_dir, model_file = os.path.split(os.path.abspath(a.model))
    model = AutoModelForCausalLM.from_pretrained(model_dir, gguf_file=model_file, dtype=torch.float32, attn_implementation="sdpa"
    )
    model.requires_grad_(False)
    for layer in model.model.layers:
        for mod in TARGETS:
            parent, name = mod.split(".")
            holder = layer.get_submodule(parent)
            setattr(holder, name, LoRA(getattr(holder, name), a.rank, a.alpha))
    device = torch.device(a.device)
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.0)

    seqs = [json.loads(l) for l in open(a.data)]
    ckpt = out / "checkpoint.pt"
    state = {"step": 0, "seconds": 0.0, "epoch": 0, "batch": 0}
    if ckpt.exists():
        c = torch.load(ckpt, map_location=device)
        model.load_state_dict(c["lora"], strict=False)
        opt.load_state_dict(c["opt"])
        state = c["state"]
        print(f"resumed at step {state['step']} ({state['seconds']:.0f} s trained)", flush=True)
    elif a.init and a.init.endswith(".safetensors"):
        import_adapter(model, a.init)
        state["init"] = {"from": os.path.basename(a.init)}
        print(f"starting from {a.init}", flush=True)
    elif a.init:
        c = torch.load(a.init, map_location=device)
        model.load_state_dict(c["lora"], strict=False)
        state["init"] = {"from": a.init, "steps": c["state"]["step"]}
        print(f"starting from {a.init} ({c['state']['step']} steps)", flush=True)
    bf16 = bf16_is_faster(device)
    print(f"bf16 autocast: {'on' if bf16 else 'off (bf16 is slower than f32 here)'}", flush=True)
    head = frozen_in_bf16(model) if bf16 else model.model.embed_tokens.weight
    budget = 0 if a.export_only else a.minutes * 60
    if device.type == "cpu" and budget >= COMPILE_FROM_MINUTES * 60:
        compile_for(model, head, seqs, device, bf16)
    log = open(out / "log.jsonl", "a")
    last_save = time.time()
    t_start = time.time() - state["seconds"]
    done = False
    while not done:
        rng = random.Random(a.seed + state["epoch"])
        for k, group in enumerate(batches(seqs, a.batch, rng)):
            if k < state["batch"]:
                continue
            elapsed = time.time() - t_start
            if elapsed >= budget:
                done = True
                break
            warm = min(1.0, (state["step"] + 1) / 20)
            cosine = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, elapsed / budget)))
            for g in opt.param_groups:
                g["lr"] = a.lr * warm * cosine
            t0 = time.time()
            loss, n = loss_of(model, head, [seqs[j] for j in group], device, bf16)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            state["step"] += 1
            state["batch"] = k + 1
            state["seconds"] = time.time() - t_start
            tokens = sum(len(seqs[j]["ids"]) for j in group)
            rec = {"step": state["step"], "batch": a.batch, "loss": round(loss.item(), 4), "answer_tokens": n,
                   "tokens_per_s": round(tokens / (time.time() - t0), 1), "lr": g["lr"],
                   "seconds": round(state["seconds"], 1)}
            log.write(json.dumps(rec) + "\n")
            log.flush()
            if state["step"] % 10 == 0:
                print(rec, flush=True)
            if time.time() - last_save > 600:
                lora = {k: v for k, v in model.state_dict().items() if k.endswith((".a", ".b"))}
                torch.save({"lora": lora, "opt": opt.state_dict(), "state": state}, ckpt)
                last_save = time.time()
        else:
            state["epoch"] += 1
            state["batch"] = 0
    if not a.export_only:
        lora = {k: v for k, v in model.state_dict().items() if k.endswith((".a", ".b"))}
        torch.save({"lora": lora, "opt": opt.state_dict(), "state": state}, ckpt)
    meta = {"format": "anote-lora-v1", "base_fingerprint": fingerprint(a.model), "rank": a.rank,
            "alpha": a.alpha, "steps": state["step"], "train_seconds": round(state["seconds"])}
    if "init" in state:
        meta["init"] = json.dumps(state["init"])
    export(model, a.adapter, a.rank, meta)
    print("wrote", a.adapter, meta, flush=True)


if __name__ == "__main__":
    main()
