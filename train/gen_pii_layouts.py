"""Extra synthetic PII training documents for the layouts the shipped adapter gets wrong.

    python train/gen_pii_layouts.py --out FILE [--n 2000] [--seed 7]
    (or make_examples.py --pii-layouts N, which makes them itself)

Error analysis of the PII dev set (docs/eval.md) found the adapter cutting address blocks
short (a line that starts with a comma, a military PSC/APO address, "the corner of X and Y"),
missing a company named alone on a signature line, and calling song, book and film titles
TITLE. The training generator (../shared/train/pii_synth) has few such layouts, so this one
writes them: signature blocks, address labels, addresses inside sentences, and sentences
that name creative works, genres and products, which are not PII. The wording and layouts
are written here; persona values (names, streets, cities, phones...) come from the training
generator's Filler, which this script imports rather than repeats. Span conventions are the
pii preset's: a written address block is one STREET_ADDRESS, a company ORGANIZATION, a job
title or honorific TITLE, a work's title nothing, and a year or weekday beside a work still a
DATE_TIME (run E, trained without such sentences, learned to drop "a 2005 film"'s year).
"""
import argparse
import importlib.util
import json
import os
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
GENERATOR = HERE.parent.parent / "shared" / "train" / "pii_synth" / "generator" / "gen_pii_train.py"


def load_generator():
    spec = importlib.util.spec_from_file_location("gen_pii_train", GENERATOR)
    g = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(g)
    return g


class Doc:
    """Text built piece by piece; labelled pieces become entities at their offsets."""

    def __init__(self, text="", entities=()):
        self.text, self.entities = text, list(entities)

    def add(self, s, label=None):
        if label:
            self.entities.append({"start": len(self.text), "end": len(self.text) + len(s), "label": label, "text": s})
        self.text += s
        return self


# Address parts -----------------------------------------------------------------------

STATE_ABBR = ["AL", "AZ", "CA", "CO", "FL", "GA", "IL", "MA", "MI", "NY", "OH", "OR", "PA", "TX", "WA",
              "ON", "BC", "QC", "NSW", "VIC", "QLD", "PE", "SP", "RJ", "MG"]


def parts(fl, r):
    """street, secondary (or ''), city, region (or ''), postcode, country (or '')."""
    street = fl.f.street_address()
    second = fl.us.secondary_address() if r.random() < 0.3 else ""
    region = r.choice(STATE_ABBR) if r.random() < 0.5 else ""
    country = fl.country() if r.random() < 0.5 else ""
    return street, second, fl.f.city(), region, fl.f.postcode(), country


def military(fl, r):
    box = r.choice([f"PSC {r.randint(1000, 9999)}, Box {r.randint(1000, 9999)}",
                    f"Unit {r.randint(1000, 9999)} Box {r.randint(1000, 9999)}",
                    f"USNS {fl.us.last_name()}", f"USS {fl.us.last_name()}",
                    f"USNV {fl.us.last_name()}", f"USCGC {fl.us.last_name()}"])
    post = r.choice(["APO", "FPO", "DPO"]) + " " + r.choice(["AA", "AE", "AP"]) + f" {r.randint(0, 99999):05d}"
    return box, post


def address_block(fl, r):
    """A multi-line address, laid out one of several ways (all one STREET_ADDRESS)."""
    k = r.random()
    if k < 0.12:
        box, post = military(fl, r)
        return box + r.choice(["\n", ", ", " "]) + post
    if k < 0.3:
        lines = [x.strip() for x in fl.f.address().split("\n") if x.strip()]
        if r.random() < 0.4:
            lines.append(fl.country())
        return "\n".join(lines)
    street, second, city, region, code, country = parts(fl, r)
    layout = r.randrange(5)
    if layout == 0:  # street / city, ST code / country
        lines = [street] + ([second] if second else []) + [" ".join(x for x in [city + ("," if region else ""), region, code] if x)]
        lines += [country] if country else []
    elif layout == 1:  # each part on its own line, some lines led by a comma
        lines = [street] + ([second] if second else []) + [city]
        lines += [", " + region] if region else []
        lines += [" " + " ".join(x for x in [country, code] if x)]
    elif layout == 2:  # trailing commas
        lines = [street + ","] + ([second + ","] if second else []) + [city + ","]
        lines += [" ".join(x for x in [region, code] if x)] + ([country] if country else [])
    elif layout == 3:  # postcode before the city
        lines = [street] + ([second] if second else []) + [f"{code} {city}"] + ([country] if country else [])
    else:  # country and postcode on the last line
        lines = [street, city + (", " + region if region else ""), " ".join(x for x in [country or fl.country(), code])]
    return "\n".join(lines)


def address_inline(fl, r):
    """An address written inside a sentence (one STREET_ADDRESS)."""
    k = r.random()
    if k < 0.2:
        return f"the corner of {fl.f.street_address()} and {fl.f.street_name()}"
    if k < 0.3:
        box, post = military(fl, r)
        return f"{box}{r.choice([', ', ' ', chr(10)])}{post}"
    street, second, city, region, code, country = parts(fl, r)
    sep = r.choice([", ", ", ", " "])
    bits = [street] + ([second] if second else []) + [city]
    tail = " ".join(x for x in [region, code] if x)
    if r.random() < 0.4 and country:
        tail = " ".join(x for x in [country, code] if x)
        return sep.join(bits + [tail])
    return sep.join(bits + [tail] + ([country] if country else []))


# Documents --------------------------------------------------------------------------

CLOSINGS = ["Best regards,", "Kind regards,", "Thanks,", "Cheers,", "--", "Regards", "Sincerely,",
            "Many thanks", "Best,", "Warm wishes,", ""]
BODIES = ["Please let me know if the revised quote works for you.",
          "Attached is the signed contract.", "I'll be out of office until next week.",
          "Looking forward to our call.", "Thanks for the quick turnaround on this.",
          "Happy to discuss the details whenever suits you.", "See the notes below.", ""]
PHONE_TAGS = ["", "Tel: ", "Phone: ", "Mobile: ", "Mob ", "Desk: ", "Fax: ", "M: ", "T: ", "Cell: ", "Office: "]


def signature(fl, r, g):
    d = Doc()
    body = r.choice(BODIES)
    if body:
        d.add(body + r.choice(["\n\n", "\n"]))
    closing = r.choice(CLOSINGS)
    if closing:
        d.add(closing + "\n")
    if r.random() < 0.2:
        d.add(fl.hon(), "TITLE").add(" ")
    d.add(fl.f.name(), "PERSON")
    lines = []
    if r.random() < 0.7:
        lines.append([(fl.job(), "TITLE")])
    if r.random() < 0.85:
        lines.append([(fl.org(), "ORGANIZATION")])
    if r.random() < 0.75:
        lines.append([(address_block(fl, r), "STREET_ADDRESS")])
    for _ in range(r.choice([0, 1, 1, 2, 3])):
        lines.append([(r.choice(PHONE_TAGS), None), (fl.phone(), "PHONE_NUMBER")])
    if r.random() < 0.6:
        lines.append([(r.choice(["", "E: ", "Email: ", "mail: "]), None), (g.slot_value(fl, "EMAIL"), "EMAIL_ADDRESS")])
    if r.random() < 0.3:
        lines.append([(fl.url(), "DOMAIN_NAME")])
    if r.random() < 0.3 and len(lines) > 2:  # some signatures put the company first
        lines.insert(0, lines.pop(1))
    for line in lines:
        d.add("\n")
        for s, label in line:
            d.add(s, label)
    return d


LABEL_HEADS = ["Ship to:", "Deliver to:", "Recipient:", "Return address:", "Billing address:",
               "Mailing address", "SHIP TO", "Bill to:", "Send to:", "Address on file:"]


def label_block(fl, r, g):
    d = Doc()
    d.add(r.choice(LABEL_HEADS) + r.choice(["\n", " ", "\n"]))
    if r.random() < 0.5:
        d.add(fl.f.name(), "PERSON").add("\n")
    if r.random() < 0.35:
        d.add(fl.org(), "ORGANIZATION").add(r.choice(["\n", "\nc/o "]))
    d.add(address_block(fl, r), "STREET_ADDRESS")
    if r.random() < 0.4:
        d.add("\n" + r.choice(["", "Tel ", "Phone: "])).add(fl.phone(), "PHONE_NUMBER")
    return d


INLINE = [("Please forward my mail to ", "."), ("Our new office is at ", ", on the second floor."),
          ("The package was left at ", " but nobody was home."), ("I have moved to ", " as of this month."),
          ("Can you update my address to ", "?"), ("Meet us at ", " after work."),
          ("The clinic is located at ", "."), ("Invoices go to ", ", attention accounts payable."),
          ("We are at ", " - ring the bell twice."), ("Delivery address: ", ""),
          ("My parents live at ", " now."), ("Pick-up point is ", ", next to the pharmacy."),
          ("The warehouse at ", " is closed for inventory."), ("Registered office: ", "")]


def inline(fl, r, g):
    d = Doc()
    if r.random() < 0.3:  # led by who is there: a company or a person
        if r.random() < 0.5:
            d.add(fl.org(), "ORGANIZATION")
        else:
            d.add(fl.f.name(), "PERSON")
        d.add(" - ")
    pre, post = r.choice(INLINE)
    d.add(pre).add(address_inline(fl, r), "STREET_ADDRESS").add(post)
    if r.random() < 0.3:
        d.add(r.choice([" Old address was ", " Previously: ", " (before that "]))
        d.add(address_inline(fl, r), "STREET_ADDRESS").add(r.choice([".", ")", ""]))
    return d


WORDS_A = ["Midnight", "Silent", "Golden", "Paper", "Broken", "Electric", "Velvet", "Hollow", "Crimson",
           "Northern", "Last", "Wild", "Quiet", "Neon", "Distant", "Burning", "Little", "Endless"]
WORDS_B = ["Rain", "Harbor", "Lanterns", "Horizon", "Garden", "Highway", "Letters", "Mirrors", "Tide",
           "Summer", "Machine", "Orchard", "Signals", "Daughters", "Winter", "Kingdom", "River", "Static"]
GENRES = ["synthwave", "jazz", "lo-fi hip hop", "bluegrass", "techno", "k-pop", "classical", "metal",
          "indie folk", "drum and bass", "reggaeton", "ambient", "punk", "soul", "sci-fi", "crime fiction",
          "fantasy", "true crime", "romantic comedy", "horror"]
CREATIVE = [  # the training generator's slot syntax: [[NAME]] is a PERSON, [[JOB]] a TITLE...
    "[[NAME]] has had {song} on repeat all week.", "Just finished {book} - what a read!",
    "Our book club picked {book} for [[DATE]].", "Now playing: {song} ({genre} mix)",
    "Watched {film} with [[NAME]] last night, the ending was wild.", "Is {film} worth watching? I mostly like {genre}.",
    "I'm a [[JOB]] and I listen to {genre} while working.", "[[HON]] [[NAME]] recommended {book} to the whole team.",
    "The report {report} is due [[DATE]].", "Review of the {product}: four stars, the battery could be better.",
    "{song} by [[NAME]] is the best track on {album}.", "Can someone send me the slides for {report}?",
    "Tickets for the {genre} night at [[ORG]] are sold out.", "Listening to {genre} and reading {book}.",
    "[[ORG]] ships the {product} with a two-year warranty.", "My favourite album is still {album}.",
    "Playlist for the road trip: {song}, {song2} and a lot of {genre}.",
    # A year or weekday beside a work is still a DATE_TIME.
    "{film} ([[YEAR]]) was the first {genre} film [[NAME]] made for [[ORG]].",
    "[[NAME]] recorded {album} in [[CITY]] in [[YEAR]].", "In [[YEAR]], [[ORG]] brought out the {product}.",
    "{book} came out in [[YEAR]], the year [[NAME]] moved to [[COUNTRY]].",
    "{song} was a hit for [[NAME]] back in [[YEAR]].", "Since [[YEAR]] the [[DEM]] band has played {genre} every [[WEEKDAY]].",
    "A [[YEAR]] {genre} classic, {film} still holds up.", "[[ORG]] screens {film} on [[WEEKDAY]] evening.",
]


def title(r):
    t = r.choice(WORDS_A) + " " + r.choice(WORDS_B)
    if r.random() < 0.3:
        t = "The " + t
    return r.choice(["'{}'", '"{}"', "{}", "“{}”"]).format(t)


def creative(fl, r, g):
    """Sentences naming songs, books, films, genres and products: none of them is PII;
    the person, company, job title and date beside them are."""
    works = {"song": title(r), "song2": title(r), "book": title(r), "film": title(r), "album": title(r),
             "report": title(r), "genre": r.choice(GENRES), "product": r.choice(g.PRODUCTS)}
    return Doc(*g.render(r.choice(CREATIVE).format(**works), fl))


KINDS = [(signature, 0.3), (label_block, 0.15), (inline, 0.25), (creative, 0.3)]


def generate(n, seed):
    """n distinct documents ({"id", "text", "entities"}), deterministic for a seed under
    PYTHONHASHSEED=0 (faker output depends on str hashing)."""
    g = load_generator()
    from faker import Faker

    Faker.seed(seed)
    fakers = {}
    for i, loc in enumerate(g.LOCALES):
        fakers[loc] = Faker(loc)
        fakers[loc].seed_instance(seed + i)
    r = random.Random(seed)
    docs, seen = [], set()
    while len(docs) < n:
        make = r.choices([k for k, _ in KINDS], [w for _, w in KINDS])[0]
        d = make(g.Filler(fakers, r), r, g)
        if d.text in seen:
            continue
        seen.add(d.text)
        for e in d.entities:
            assert d.text[e["start"]:e["end"]] == e["text"]
        docs.append({"id": f"pii-layouts-{len(docs):05d}-{make.__name__}", "text": d.text, "entities": d.entities})
    return docs


def pin_hash_seed():
    """Re-executes the script under PYTHONHASHSEED=0 (faker output depends on str hashing)."""
    if os.environ.get("PYTHONHASHSEED") != "0":
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable] + sys.argv)


def main():
    pin_hash_seed()
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    with open(a.out, "w") as f:
        for d in generate(a.n, a.seed):
            f.write(json.dumps(d, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
