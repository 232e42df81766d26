"""The schema variations of make_examples.py: what the model is trained to read."""
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import make_examples  # noqa: E402

SCHEMA = {
    "description": "Voice queries.",
    "span_rules": "Mark each slot value. A single song is music_item, never album.",
    "labels": [
        {"label": "album", "description": "The title of an album. Single songs are music_item."},
        {"label": "music_item", "description": "A kind of music item: song, track, album as a word."},
        {"label": "timeRange", "description": "When: a date or time. Places are not timeRange."},
    ],
}


def test_labels_are_written_as_people_write_them():
    assert make_examples.natural("Class_Name") == "class name"
    assert make_examples.natural("Gene_or_gene_product") == "gene or gene product"
    assert make_examples.natural("timeRange") == "time range"
    assert make_examples.natural("HTML_XML_Tag") == "HTML XML tag"
    for acronym in ["GGP", "pH", "WoA", "PER"]:
        assert make_examples.natural(acronym) == acronym


def test_opaque_labels_leave_the_meaning_to_the_guidelines_and_rename_every_reference():
    for seed in range(20):
        s, shown = make_examples.vary_schema(random.Random(seed), SCHEMA, {}, [], opaque_share=1.0)
        labels = [t["label"] for t in s["labels"]]
        assert set(shown.values()) == set(labels), "every shown type maps back to its gold label"
        assert not set(labels) & {"album", "music_item", "timeRange"}, labels
        text = " ".join([s.get("span_rules", "")] + [t["description"] for t in s["labels"]])
        for gold in ["music_item", "timeRange"]:  # identifier-like labels are renamed in the prose
            assert gold not in text or gold not in shown, text
        assert "album" in text or "album" not in shown  # a plain word stays prose


def test_foreign_absent_types_join_under_their_own_guidelines():
    foreign = [{"label": "Library_Class", "description": "A class provided by a library."}]
    added = 0
    for seed in range(40):
        s, shown = make_examples.vary_schema(random.Random(seed), SCHEMA, {}, [], foreign)
        extra = [t for t in s["labels"] if t["label"] not in shown.values()]
        assert all(t == foreign[0] for t in extra), extra
        added += bool(extra)
    assert 0 < added < 40, "absent types join some examples, not all"


def test_no_schema_declares_a_label_twice_ignoring_case():
    # LOC renamed to "LOCATION" beside a type named "location", and an absent foreign
    # "Location": the engine refuses a schema that declares one name twice in any case.
    schema = {"labels": [{"label": "LOC", "description": "A place."},
                         {"label": "location", "description": "Where something is."}]}
    variants = {"LOC": {"names": ["LOCATION"]}}
    foreign = [{"label": "Location", "description": "A place in a lab."}]
    for seed in range(200):
        s, shown = make_examples.vary_schema(random.Random(seed), schema, variants, [], foreign, natural_share=0.5)
        labels = [t["label"].casefold() for t in s["labels"]]
        assert len(labels) == len(set(labels)), s["labels"]
        assert set(shown.values()) <= {t["label"] for t in s["labels"]}
