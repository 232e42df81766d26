"""Training examples for the schema-following fine-tune: {"schema", "docs"} per line, to be
rendered into token ids by `anote render-training` (the extractor's own prompt code).

Each example packs several documents of one training set under one schema, varied so the
model learns to read the schema rather than memorise label sets: label subsets, shuffled
order, other names and wordings (label_variants.json), examples kept or dropped, absent
types added as negatives. Never reads ../shared/eval or CrossNER.

--pii-layouts N adds N PII documents in the layouts the adapter got wrong (gen_pii_layouts.py)
as a set of their own under the pii schema.

Options, off by default:
--specialize adds finer types beside the coarse ones to a share of the examples
(subtypes.json: country under location, politician under person...) so the model learns to
prefer the most specific type a schema offers; --join makes a share of the newswire
documents several consecutive sentences long; --diverse draws a share of the examples from
the 17 sets of other domains (biomedical, software, lab protocols, voice queries, novels...),
with absent types of other domains as negatives; --natural writes labels as people do
("class name"); --opaque replaces them by names that say nothing ("type 3"), so that only
the guideline tells what to mark.
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
# The 17 sets of other domains and many more types (../shared/train/README.md), drawn for
# a share of the examples (--diverse); relative weights, higher for sets with more types.
DIVERSE = {
    "anatem": 0.5, "bc5cdr": 1.0, "ncbi_disease": 0.5, "bionlp13cg": 1.2, "bc2gm": 0.5, "linnaeus": 0.4,
    "craft": 1.0, "anem": 0.6, "wnut20_wlp": 1.0, "stackoverflow_ner": 1.5, "gum": 1.2, "fin5": 0.4,
    "wikigold": 0.8, "re3d": 0.8, "litbank": 1.0, "music_reco_ner": 0.8, "snips": 1.5,
}
# Types that text outside their domain practically never holds: with --diverse they join
# other domains' schemas as absent types, so the model learns to answer nothing for a
# type it reads about but does not see.
FOREIGN = {
    "lab": {
        "bc2gm": ["GENE"], "craft": ["GGP", "GO", "SO", "CL"], "wnut20_wlp": ["Reagent", "Concentration", "pH", "Seal"],
        "bionlp13cg": ["Gene_or_gene_product", "Cell", "Cellular_component", "Amino_acid", "Multi-tissue_structure",
                       "Developing_anatomical_structure", "Pathological_formation"],
    },
    "code": {
        "stackoverflow_ner": ["Class_Name", "Code_Block", "Function_Name", "HTML_XML_Tag", "Library_Class",
                              "Library_Function", "Library_Variable", "Variable_Name", "Error_Name", "Output_Block",
                              "File_Type", "Data_Structure"],
    },
}
DOMAIN = {s: "lab" for s in ["anatem", "bc5cdr", "ncbi_disease", "bionlp13cg", "bc2gm", "linnaeus", "craft", "anem", "wnut20_wlp"]}
DOMAIN["stackoverflow_ner"] = "code"
MAX_SHOWN = 18  # types shown at most (snips has 39): CrossNER-sized schemas, bounded sequences
OPAQUE = ["type {n}", "T{n}", "category {a}", "label_{n}", "kind {a}"]


def read_set(train_dir, name, schema_path=None):
    """A training set's schema (its own schema.json unless another file is given) and documents."""
    folder = Path(train_dir) / name
    schema = json.loads((schema_path or folder / "schema.json").read_text())
    return schema, [json.loads(l) for l in (folder / "train.jsonl").open()]


def load(train_dir, join, pii_layouts, seed, diverse):
    """Set name -> (mix weight, schema, documents); with diverse > 0 the diverse sets take
    that share of the weight."""
    data = {}
    for name, (weight, schema_path) in SETS.items():
        schema, docs = read_set(train_dir, name, schema_path)
        if name == "conll2003" and join:
            docs = join_sentences(random.Random(7), docs, join)
        data[name] = (weight, schema, docs)
    if pii_layouts:
        data["pii_layouts"] = (0.25, data["pii_synth"][1], gen_pii_layouts.generate(pii_layouts, seed))
    if diverse:
        kept = (1 - diverse) / sum(w for w, _, _ in data.values())
        data = {n: (w * kept, s, d) for n, (w, s, d) in data.items()}
        total = sum(DIVERSE.values())
        for name, weight in DIVERSE.items():
            data[name] = (diverse * weight / total, *read_set(train_dir, name))
    return data


def foreign_types(data):
    """Domain -> the absent-type entries (label, description) that its examples may get:
    those of every other domain of FOREIGN."""
    pools = {}
    for domain, sets in FOREIGN.items():
        pools[domain] = [t for s, labels in sets.items() for t in data[s][1]["labels"] if t["label"] in labels]
    return {d: [t for other, ts in pools.items() if other != d for t in ts] for d in [*FOREIGN, None]}


def natural(label):
    """A label as people write it: "Class_Name" -> "class name", "timeRange" -> "time range";
    acronyms (GGP, pH) stay as they are."""
    words = re.sub(r"(?<=[a-z]{2})(?=[A-Z])", " ", label).replace("_", " ").replace("-", " ").split()
    return " ".join(w.lower() if w[1:] == w[1:].lower() else w for w in words)


def opaque_names(rng, schema, shown):
    """Every label replaced by a name that says nothing ("type 3", "category B"): only the
    guideline tells the model what to mark."""
    style = rng.choice(OPAQUE)
    order = list(range(len(schema["labels"])))
    rng.shuffle(order)
    renamed = {}
    for i, entry in zip(order, schema["labels"]):
        renamed[entry["label"]] = style.format(n=i + 1, a=chr(ord("A") + i))
        entry["label"] = renamed[entry["label"]]
    for gold, label in shown.items():
        shown[gold] = renamed.get(label, label)


def rewrite_references(schema, shown):
    """Guidelines name other types ("Single songs are track."): under new names, so must
    they. Only identifier-like labels (an upper-case letter or an underscore) are replaced,
    so that a label such as "place" does not rewrite the prose."""
    for gold, label in shown.items():
        if gold == label or not re.search(r"[A-Z_]", gold):
            continue
        pat = re.compile(r"(?<![\w-])%s(?![\w-])" % re.escape(gold))
        for entry in schema["labels"]:
            entry["description"] = pat.sub(lambda _: label, entry["description"])
        if "span_rules" in schema:
            schema["span_rules"] = pat.sub(lambda _: label, schema["span_rules"])


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


def declared(label, entries):
    """Whether a schema's entries hold `label` already, compared as the engine compares
    labels (ignoring case; it refuses a schema that declares one twice)."""
    return label.casefold() in {e["label"].casefold() for e in entries}


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
        name = rng.choice(t["names"])
        if declared(name, schema["labels"]):
            continue
        fine[n] = name
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


def vary_schema(rng, schema, variants, negatives, foreign=(), natural_share=0.0, opaque_share=0.0):
    """A schema for one example, and the map from the gold label to the label shown.
    negatives: names of label_variants.json to add as absent types; foreign: absent-type
    entries of other domains (--diverse); natural_share, opaque_share: the chance that the
    labels are written as people write them, or replaced by names that say nothing."""
    types = schema["labels"]
    if rng.random() < 0.35:
        kept = list(types)
    else:
        kept = [t for t in types if rng.random() < 0.8] or [rng.choice(types)]
    if len(kept) > MAX_SHOWN:
        kept = rng.sample(kept, MAX_SHOWN)
    rename = rng.random() < 0.5
    as_written = natural_share and rng.random() < natural_share
    opaque = opaque_share and rng.random() < opaque_share and all(t.get("description") for t in kept)
    out, shown = [], {}
    for t in kept:
        v = variants.get(t["label"], {})
        label = t["label"]
        if rename and v.get("names") and rng.random() < 0.6:
            label = rng.choice(v["names"])
        elif as_written:
            label = natural(label)
        if declared(label, out):
            label = t["label"]
        if declared(label, out):  # two types one name apart in case only: the second is dropped
            continue
        r = rng.random()
        if r < 0.55 or opaque or not v.get("descriptions"):
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
    if (negatives or foreign) and rng.random() < 0.3:
        pool = [{"label": n, "description": None} for n in negatives] + list(foreign)
        for n in rng.sample(pool, min(len(pool), rng.randint(1, 2 if not foreign else 3))):
            label = natural(n["label"]) if as_written else n["label"]
            if not declared(label, out):  # out holds every shown label
                desc = n["description"] or rng.choice(variants[n["label"]]["descriptions"])
                out.append({"label": label, "description": desc})
    rng.shuffle(out)
    s = {"labels": out}
    if rng.random() < 0.8:
        s["description"] = schema.get("description", "")
        s["span_rules"] = schema.get("span_rules", "")
    if opaque:
        opaque_names(rng, s, shown)
    rewrite_references(s, shown)
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
    ap.add_argument("--diverse", type=float, default=0.0, help="share of examples from the DIVERSE sets, "
                    "whose examples and the others' may get absent types of other domains (FOREIGN)")
    ap.add_argument("--natural", type=float, default=0.0, help="share of examples with labels as people "
                    "write them ('class name' for Class_Name)")
    ap.add_argument("--opaque", type=float, default=0.0, help="share of examples whose labels say nothing "
                    "('type 3'): only the guidelines carry the meaning")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    assert "eval" not in a.train_dir and "crossner" not in a.train_dir.lower()
    rng = random.Random(a.seed)
    variants = json.loads((HERE / "label_variants.json").read_text())
    data = load(a.train_dir, a.join, a.pii_layouts, a.seed, a.diverse)
    foreign = foreign_types(data) if a.diverse else {}
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
            # E-mail and IP addresses are at home in PII and in code questions.
            at_home = name.startswith("pii") or DOMAIN.get(name) == "code"
            negatives = [] if at_home else variants["_safe_negatives"]["names"]
            theirs = [] if name.startswith("pii") else foreign.get(DOMAIN.get(name), [])
            s, shown = vary_schema(rng, schema, variants, negatives, theirs, a.natural, a.opaque)
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
