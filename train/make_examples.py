"""Training examples for the schema-following fine-tune: {"schema", "docs"} per line, to be
rendered into token ids by `anote render-training` (the extractor's own prompt code).

Each example packs several documents of one training set under one schema, varied so the
model learns to read the schema rather than memorise label sets: label subsets, shuffled
order, other names and wordings (label_variants.json), examples kept or dropped, absent
types added as negatives. Never reads ../shared/eval or CrossNER.
"""
import argparse
import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
SETS = {  # training set -> (mix weight, schema file)
    "pii_synth": (0.45, HERE.parent / "presets" / "pii.json"),
    "conll2003": (0.30, None),
    "wnut17": (0.13, None),
    "btc": (0.12, None),
}


def load(train_dir):
    data = {}
    for name, (weight, schema_path) in SETS.items():
        folder = Path(train_dir) / name
        schema = json.loads((schema_path or folder / "schema.json").read_text())
        docs = [json.loads(l) for l in (folder / "train.jsonl").open()]
        data[name] = (weight, schema, docs)
    return data


def vary_schema(rng, schema, variants, negatives):
    """A schema for one example, and the map from the gold label to the label shown."""
    types = schema["labels"]
    if rng.random() < 0.35:
        kept = list(types)
    else:
        kept = [t for t in types if rng.random() < 0.8] or [rng.choice(types)]
    rename = rng.random() < 0.5
    out, shown = [], {}
    for t in kept:
        v = variants.get(t["label"], {})
        label = t["label"]
        if rename and v.get("names") and rng.random() < 0.6:
            label = rng.choice(v["names"])
        if label in shown.values():
            label = t["label"]
        r = rng.random()
        if r < 0.55 or not v.get("descriptions"):
            desc = t.get("description", "")
        elif r < 0.7:
            desc = t.get("description", "").split(". ")[0].rstrip(".") + "."
        else:
            desc = rng.choice(v["descriptions"])
        entry = {"label": label, "description": desc}
        if t.get("examples") and rng.random() < 0.6:
            entry["examples"] = t["examples"]
        out.append(entry)
        shown[t["label"]] = label
    if negatives and rng.random() < 0.3:
        for n in rng.sample(negatives, rng.randint(1, 2)):
            if n not in shown.values():
                v = variants[n]
                out.append({"label": n, "description": rng.choice(v["descriptions"])})
    rng.shuffle(out)
    s = {"labels": out}
    if rng.random() < 0.8:
        s["description"] = schema.get("description", "")
        s["span_rules"] = schema.get("span_rules", "")
    return s, shown


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train-dir", default=str(HERE.parent.parent / "shared" / "train"))
    ap.add_argument("--examples", type=int, default=6000)
    ap.add_argument("--docs-per-example", type=int, default=6)
    ap.add_argument("--seed", type=int, default=20261127)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    assert "eval" not in a.train_dir and "crossner" not in a.train_dir.lower()
    rng = random.Random(a.seed)
    variants = json.loads((HERE / "label_variants.json").read_text())
    data = load(a.train_dir)
    names = list(data)
    weights = [data[n][0] for n in names]
    with open(a.out, "w") as f:
        for _ in range(a.examples):
            name = rng.choices(names, weights)[0]
            _, schema, docs = data[name]
            negatives = [] if name == "pii_synth" else variants["_safe_negatives"]["names"]
            s, shown = vary_schema(rng, schema, variants, negatives)
            picked = []
            for d in rng.sample(docs, a.docs_per_example):
                ents = [
                    {"start": e["start"], "end": e["end"], "label": shown[e["label"]]}
                    for e in d["entities"]
                    if e["label"] in shown
                ]
                picked.append({"text": d["text"], "entities": ents})
            f.write(json.dumps({"set": name, "schema": s, "docs": picked}, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
