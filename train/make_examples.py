"""Training examples for the schema-following fine-tune: {"schema", "docs"} per line, to be
rendered into token ids by `anote render-training` (the extractor's own prompt code).

Each example packs several documents of one training set under one schema, varied so the
model learns to read the schema rather than memorise label sets: label subsets, shuffled
order, other names and wordings (label_variants.json), examples kept or dropped, absent
types added as negatives. Never reads ../shared/eval or CrossNER.

--pii-layouts N adds N PII documents in the layouts the adapter got wrong (gen_pii_layouts.py)
as a set of their own under the pii schema.

Two options, off by default (an experiment, measured and not shipped: models/README.md):
--specialize adds finer types beside the coarse ones to a share of the examples
(subtypes.json: country under location, politician under person...) so the model learns to
prefer the most specific type a schema offers; --join makes a share of the newswire
documents several consecutive sentences long.
"""
import argparse
import json
import random
import re
from pathlib import Path

import gen_pii_layouts

HERE = Path(__file__).resolve().parent
SETS = {  # training set -> (mix weight, schema file)
    "pii_synth": (0.45, HERE.parent / "presets" / "pii.json"),
    "conll2003": (0.30, None),
    "wnut17": (0.13, None),
    "btc": (0.12, None),
}


def load(train_dir, join, pii_layouts, seed):
    data = {}
    for name, (weight, schema_path) in SETS.items():
        folder = Path(train_dir) / name
        schema = json.loads((schema_path or folder / "schema.json").read_text())
        docs = [json.loads(l) for l in (folder / "train.jsonl").open()]
        if name == "conll2003" and join:
            docs = join_sentences(random.Random(7), docs, join)
        data[name] = (weight, schema, docs)
    if pii_layouts:
        data["pii_layouts"] = (0.25, data["pii_synth"][1], gen_pii_layouts.generate(pii_layouts, seed))
    return data


class Subtypes:
    """Rules that give a coarse entity a finer type, from subtypes.json."""

    def __init__(self, spec):
        self.spec = spec
        self.rules = {}
        for name, t in spec["subtypes"].items():
            kind, _, arg = t["rule"].partition(":")
            if kind == "list":
                words = {w.lower() for w in spec[arg]}
                self.rules[name] = lambda text, before, words=words: text.lower() in words
            elif kind == "words":
                pat = re.compile(r"\b(?:%s)\b" % "|".join(re.escape(w) for w in arg.split(",")))
                self.rules[name] = lambda text, before, pat=pat: bool(pat.search(text))
            else:  # "before": a role word right before the name
                pat = re.compile(r"\b(?:%s)\s*$" % "|".join(re.escape(w) for w in arg.split(",")))
                self.rules[name] = lambda text, before, pat=pat: bool(pat.search(before[-40:]))

    def of(self, doc, e):
        """The finer type of entity e, or None. A name that earns a type once in a
        document keeps it at every mention there ('President Clinton' ... 'Clinton')."""
        for name, t in self.spec["subtypes"].items():
            if e["label"] not in t["parents"]:
                continue
            for o in doc["entities"]:
                if o["label"] != e["label"]:
                    continue
                text, other = doc["text"][e["start"]:e["end"]], doc["text"][o["start"]:o["end"]]
                same = other == text or other.split()[-1] == text.split()[-1]
                if same and self.rules[name](other, doc["text"][:o["start"]]):
                    return name
        return None


def join_sentences(rng, docs, share):
    """CoNLL documents are single sentences; join a share of them with the next ones of
    the same article (ids share the article part) into one longer document."""
    by_article = {}
    for i, d in enumerate(docs):
        by_article.setdefault(d["id"].rsplit("-", 1)[0], []).append(i)
    out = []
    for ids in by_article.values():
        k = 0
        while k < len(ids):
            n = rng.choice([2, 3, 4]) if rng.random() < share else 1
            text, ents = "", []
            for i in ids[k:k + n]:
                if text:
                    text += " "
                ents += [{**e, "start": e["start"] + len(text), "end": e["end"] + len(text)} for e in docs[i]["entities"]]
                text += docs[i]["text"]
            out.append({"id": docs[ids[k]]["id"], "text": text, "entities": ents})
            k += n
    return out


def specialize(rng, schema, shown, subtypes, spec):
    """Adds 1-3 finer types whose coarse type the schema shows; returns their gold-side
    names mapped to the names shown."""
    cands = [n for n, t in spec["subtypes"].items() if any(p in shown for p in t["parents"])]
    if not cands:
        return {}
    chosen = rng.sample(cands, min(len(cands), rng.randint(1, 3)))
    fine = {}
    for n in chosen:
        t = spec["subtypes"][n]
        fine[n] = rng.choice(t["names"])
        schema["labels"].append({"label": fine[n], "description": rng.choice(t["descriptions"])})
        for p in t["parents"]:
            for entry in schema["labels"]:
                if p in shown and entry["label"] == shown[p] and not entry.get("_narrowed"):
                    entry["description"] = entry["description"].rstrip() + rng.choice(spec["parent_suffix"])
                    entry["_narrowed"] = True
    for entry in schema["labels"]:
        entry.pop("_narrowed", None)
    rng.shuffle(schema["labels"])
    schema["span_rules"] = (schema.get("span_rules", "") + " " + rng.choice(spec["span_rule"])).strip()
    return fine


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
    gen_pii_layouts.pin_hash_seed()  # --pii-layouts uses faker
    ap = argparse.ArgumentParser()
    ap.add_argument("--train-dir", default=str(HERE.parent.parent / "shared" / "train"))
    ap.add_argument("--examples", type=int, default=6000)
    ap.add_argument("--docs-per-example", type=int, default=6)
    ap.add_argument("--seed", type=int, default=20261127)
    ap.add_argument("--specialize", type=float, default=0.0, help="share of non-PII examples with finer types")
    ap.add_argument("--join", type=float, default=0.0, help="share of CoNLL sentences joined with the next ones")
    ap.add_argument("--pii-layouts", type=int, default=0, help="this many extra PII documents "
                    "(gen_pii_layouts.py: signature blocks, address layouts, titles of works), a set of "
                    "their own with weight 0.25 beside SETS'")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    assert "eval" not in a.train_dir and "crossner" not in a.train_dir.lower()
    rng = random.Random(a.seed)
    variants = json.loads((HERE / "label_variants.json").read_text())
    data = load(a.train_dir, a.join, a.pii_layouts, a.seed)
    spec = json.loads((HERE / "subtypes.json").read_text())
    subtypes = Subtypes(spec)
    # Per set: the finer type of every entity, and which documents hold each finer type.
    fine_of, holders = {}, {}
    for name, (_, _, docs) in data.items():
        fine_of[name] = [[subtypes.of(d, e) for e in d["entities"]] for d in docs]
        holders[name] = {}
        for i, fs in enumerate(fine_of[name]):
            for f in set(fs) - {None}:
                holders[name].setdefault(f, []).append(i)
        if a.specialize:
            print(name, "documents per finer type:", {f: len(v) for f, v in holders[name].items()})
    names = list(data)
    weights = [data[n][0] for n in names]
    with open(a.out, "w") as f:
        for _ in range(a.examples):
            name = rng.choices(names, weights)[0]
            _, schema, docs = data[name]
            negatives = [] if name.startswith("pii") else variants["_safe_negatives"]["names"]
            s, shown = vary_schema(rng, schema, variants, negatives)
            fine = {}
            if a.specialize and not name.startswith("pii") and rng.random() < a.specialize:
                fine = specialize(rng, s, shown, subtypes, spec)
            # Half the documents of a specialised example hold one of its finer types.
            pool = [i for f in fine for i in holders[name].get(f, [])]
            n_pool = min(len(pool), a.docs_per_example // 2)
            chosen = rng.sample(pool, n_pool) + rng.sample(range(len(docs)), a.docs_per_example - n_pool)
            picked = []
            for i in chosen:
                d = docs[i]
                ents = []
                for e, ft in zip(d["entities"], fine_of[name][i]):
                    if ft in fine:
                        ents.append({"start": e["start"], "end": e["end"], "label": fine[ft]})
                    elif e["label"] in shown:
                        ents.append({"start": e["start"], "end": e["end"], "label": shown[e["label"]]})
                picked.append({"text": d["text"], "entities": ents})
            f.write(json.dumps({"set": name, "schema": s, "docs": picked}, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
