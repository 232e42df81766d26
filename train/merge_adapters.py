"""Weighted average of LoRA adapters trained on the same base, written as one adapter of a
chosen rank (`cargo xtask train --merge` runs it).

Each adapter adds dW = B·A to a projection (its scale already folded into B). The average
sum(w_i · B_i·A_i) has rank up to sum(r_i); its best rank-r approximation (truncated SVD,
computed on the small factors: QR of the stacked B's and A's, then an SVD of the R×R core)
keeps the engine's per-token cost that of one rank-r adapter. Prints how much of the
averaged delta's energy (squared Frobenius norm) the truncation keeps.

    python merge_adapters.py --rank 16 --out merged.safetensors a.safetensors:0.5 b.safetensors:0.5
"""
import argparse
import hashlib
import json

import torch
from safetensors import safe_open
from safetensors.torch import save_file


def load(path):
    with safe_open(path, framework="pt") as f:
        return {k: f.get_tensor(k).double() for k in f.keys()}, f.metadata()


def merge(pairs, rank):
    """pairs: [(weight, B [out, r_i], A [r_i, in])] -> (B [out, rank], A [rank, in], kept energy)."""
    b = torch.cat([w * b for w, b, _ in pairs], dim=1)
    a = torch.cat([a for _, _, a in pairs], dim=0)
    qb, rb = torch.linalg.qr(b)
    qa, ra = torch.linalg.qr(a.t())
    u, s, vt = torch.linalg.svd(rb @ ra.t())
    root = s[:rank].sqrt()
    kept = float((s[:rank] ** 2).sum() / (s**2).sum())
    return (qb @ u[:, :rank]) * root, root[:, None] * (vt[:rank] @ qa.t()), kept


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--out", required=True)
    ap.add_argument("adapters", nargs="+", help="FILE:WEIGHT")
    a = ap.parse_args()
    inputs = []
    for spec in a.adapters:
        path, weight = spec.rsplit(":", 1)
        tensors, meta = load(path)
        sha = hashlib.sha256(open(path, "rb").read()).hexdigest()
        inputs.append((path, float(weight), tensors, meta, sha))
    bases = {m["base_fingerprint"] for _, _, _, m, _ in inputs}
    assert len(bases) == 1, f"adapters for different bases: {bases}"
    stems = sorted({k.rsplit(".", 1)[0] for k in inputs[0][2]})
    out, kept = {}, []
    for stem in stems:
        pairs = [(w, t[f"{stem}.lora_b"], t[f"{stem}.lora_a"]) for _, w, t, _, _ in inputs]
        b, a_, k = merge(pairs, a.rank)
        out[f"{stem}.lora_a"] = a_.to(torch.float16).contiguous()
        out[f"{stem}.lora_b"] = b.to(torch.float16).contiguous()
        kept.append(k)
    meta = {
        "format": "anote-lora-v1",
        "base_fingerprint": bases.pop(),
        "rank": str(a.rank),
        "merged_from": json.dumps([{"sha256": sha, "weight": w, "steps": m.get("steps"), "init": m.get("init")}
                                   for _, w, _, m, sha in inputs]),
    }
    save_file(out, a.out, metadata=meta)
    print(f"wrote {a.out}: {len(stems)} projections, rank {a.rank}, energy kept "
          f"min {min(kept):.4f} mean {sum(kept) / len(kept):.4f}")


if __name__ == "__main__":
    main()
