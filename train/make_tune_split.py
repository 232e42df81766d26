"""A held-out tuning split from the training sets: documents that a training run never
showed the model (its first --steps batches, replayed in train.py's order). Decoding knobs (the end penalty) are chosen on it, never
on ../shared/eval. Writes <out>/<set>.jsonl (gold, code-point offsets) and
<out>/<set>.schema.json for `anote eval`.
"""
import argparse
import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from make_examples import DIVERSE, read_set  # noqa: E402
from train import batches  # noqa: E402  (the run's batch order: seed 1, first epoch)

SETS = {"pii_synth": HERE.parent / "presets" / "pii.json", "conll2003": None, "wnut17": None}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train-dir", default=str(HERE.parent.parent / "shared" / "train"))
    ap.add_argument("--examples", required=True, help="the run's examples.jsonl")
    ap.add_argument("--sequences", required=True, help="the run's sequences.jsonl (rendered examples)")
    ap.add_argument("--steps", type=int, required=True, help="steps the run trained")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--per-set", type=int, default=150)
    ap.add_argument("--diverse", type=int, default=0, help="also this many documents of each DIVERSE set")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    lengths = [{"ids": json.loads(l)["ids"]} for l in open(a.sequences)]
    used = {j for k, group in zip(range(a.steps), batches(lengths, a.batch, random.Random(1))) for j in group}
    examples = [json.loads(l) for l in open(a.examples)]
    seen = " \n ".join(d["text"] for j in used for d in examples[j]["docs"])
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(5)
    sets = {n: (s, a.per_set) for n, s in SETS.items()}
    sets.update({n: (None, a.diverse) for n in DIVERSE if a.diverse})
    for name, (schema, count) in sets.items():
        schema, docs = read_set(a.train_dir, name, schema)
        rng.shuffle(docs)
        # Joined training documents hold several source sentences: unseen means not a
        # substring of anything trained on.
        held = [d for d in docs[: count * 3] if d["entities"] and d["text"] not in seen][:count]
        with open(out / f"{name}.jsonl", "w") as f:
            for d in held:
                f.write(json.dumps(d, ensure_ascii=False) + "\n")
        (out / f"{name}.schema.json").write_text(json.dumps(schema, ensure_ascii=False, indent=1))
        print(name, len(held), "held-out documents")


if __name__ == "__main__":
    main()
