"""A model of speech-recognizer errors, applied to the redaction corpora.

Recognizers write what they heard, not what was said. The redactor is measured on the
corpora as written (clean) and on the same cases passed through this model (noisy), so
that a rule which needs the exact word ("at", "four") shows up as lost recall.

Every corpus case becomes a ``Case``: one or two utterances (``turns``), optionally a
partial of the last one, with each secret and each value to keep located by span. The
noise is applied token by token with a seeded ``random.Random``, so a seed gives the
same noisy corpus on every machine and every run.

The table of confusions (per occurrence of the word, anywhere in the text; the rates
are stress rates, several times what a good recognizer does on telephone audio, so that
each class shows up many times in a corpus of a few hundred cases):

| heard as | said | rate |
|---|---|---|
| "add" / "that" / "hat" / "better" / nothing | "at" | 0.08 / 0.08 / 0.05 / 0.05 / 0.06 |
| nothing | "dot" | 0.08 |
| "for" | "four" | 0.25 |
| "to" / "too" | "two" | 0.15 / 0.10 |
| "ate" | "eight" | 0.15 |
| "won" | "one" | 0.10 |
| "oh" / "o" | "zero" | 0.25 / 0.10 |

Classes applied to whole numbers (a run of three or more spoken number words, or of
numeral groups), each with its rate per run or per case:

- filler (0.25 per run): "um", "uh", "er" or "hmm" between two number words;
- repair (0.15 per run of digit words, 0.10 per grouped numeral): a wrong digit, "sorry",
  and the digits again from a word or two back ("four five sorry four six");
- split utterance (0.10 per case with a number secret): the recognizer ends the
  utterance inside the number and the rest comes as the next utterance;
- split partial (0.15 per case with a secret): a partial that ends inside a secret,
  then the final.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

__all__ = ["CONFUSIONS", "RATES", "Case", "Secret", "clean_case", "noisy_case"]

CONFUSIONS: dict[str, tuple[tuple[str, float], ...]] = {
    "at": (("add", 0.08), ("that", 0.08), ("hat", 0.05), ("better", 0.05), ("", 0.06)),
    "dot": (("", 0.08),),
    "four": (("for", 0.25),),
    "two": (("to", 0.15), ("too", 0.10)),
    "eight": (("ate", 0.15),),
    "one": (("won", 0.10),),
    "zero": (("oh", 0.25), ("o", 0.10)),
}
RATES = {
    "filler": 0.25,
    "repair": 0.15,
    "repair_numeral": 0.10,
    "split_utterance": 0.10,
    "split_partial": 0.15,
}
FILLER_WORDS = ("um", "uh", "er", "hmm")
#: Secret types that are numbers (split across utterances).
NUMBER_TYPES = frozenset(
    {"CREDIT_CARD", "PHONE_NUMBER", "US_SSN", "IBAN_CODE", "ACCOUNT_NUMBER", "CARD_EXPIRY"}
)

DIGIT_WORDS = "zero one two three four five six seven eight nine".split()
_NUMBER_WORDS = frozenset(
    DIGIT_WORDS
    + "oh o double triple hundred thousand ten eleven twelve thirteen fourteen fifteen".split()
    + "sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy".split()
    + "eighty ninety".split()
)
_TOKEN = re.compile(r"\s+|[A-Za-z]+(?:'[A-Za-z]+)?|\d+|.", re.S)

Label = tuple[str, int] | None  # ("S", secret index) | ("K", keep index) | None


@dataclass(frozen=True, slots=True)
class Secret:
    type: str
    turn: int
    start: int
    end: int


@dataclass(slots=True)
class Case:
    """One corpus case as utterances, with every secret and kept value located."""

    id: str
    turns: list[str]
    secrets: list[Secret]
    keeps: list[tuple[int, str]]
    context: str = ""
    known: list[dict] = field(default_factory=list)
    partial: tuple[int, int] | None = None  # (turn, length): a partial of that turn first
    noise: set[str] = field(default_factory=set)


@dataclass(slots=True)
class _Tok:
    text: str
    label: Label


def _spans(item: dict) -> list[tuple[int, int, Label]]:
    """Secret and keep spans of a corpus item (the order test_redaction_corpus uses)."""
    out: list[tuple[int, int, Label]] = []
    taken: list[tuple[int, int]] = []
    for kind, values in (("S", [s["value"] for s in item["secrets"]]), ("K", item["keep"])):
        for i, value in enumerate(values):
            start = item["text"].find(value)
            while start >= 0 and any(a < start + len(value) and start < b for a, b in taken):
                start = item["text"].find(value, start + 1)
            if start < 0:
                continue  # a keep value inside a secret: checked by the secret
            taken.append((start, start + len(value)))
            out.append((start, start + len(value), (kind, i)))
    return sorted(out, key=lambda s: s[0])


def _tokens(item: dict) -> list[_Tok]:
    text, toks, pos = item["text"], [], 0
    for start, end, label in [*_spans(item), (len(item["text"]), len(item["text"]), None)]:
        toks += [_Tok(m.group(), None) for m in _TOKEN.finditer(text, pos, start)]
        toks += [_Tok(m.group(), label) for m in _TOKEN.finditer(text, start, end)]
        pos = end
    return toks


def _assemble(item: dict, turns: list[list[_Tok]], noise: set[str]) -> Case:
    secrets: list[Secret] = []
    keeps: list[tuple[int, str]] = []
    texts = []
    for t, toks in enumerate(turns):
        while toks and toks[0].text.isspace():
            toks = toks[1:]
        while toks and toks[-1].text.isspace():
            toks = toks[:-1]
        text, where = "", {}
        for tok in toks:
            if tok.label is not None and not tok.text.isspace():
                a, b = where.get(tok.label, (len(text), 0))
                where[tok.label] = (a, len(text) + len(tok.text))
            text += tok.text
        texts.append(text)
        for (kind, i), (a, b) in sorted(where.items(), key=lambda kv: kv[1]):
            if kind == "S":
                secrets.append(Secret(item["secrets"][i]["type"], t, a, b))
            else:
                keeps.append((t, text[a:b]))
    return Case(
        item["id"], texts, secrets, keeps, item.get("context", ""), item.get("known", []),
        noise=noise,
    )  # fmt: skip


def clean_case(item: dict) -> Case:
    """A corpus item as it is: one utterance, no partial."""
    return _assemble(item, [_tokens(item)], set())


def _cased(replacement: str, original: str) -> str:
    return replacement.capitalize() if original[:1].isupper() else replacement


def _confuse(toks: list[_Tok], rng: random.Random, noise: set[str]) -> list[_Tok]:
    out: list[_Tok] = []
    for tok in toks:
        # Spoken words only: "AT61" (an IBAN's country) is no "at".
        table = (
            None if tok.text.isupper() and len(tok.text) > 1 else CONFUSIONS.get(tok.text.lower())
        )
        if table is not None:
            x = rng.random()
            for replacement, rate in table:
                if x < rate:
                    noise.add(f"{tok.text.lower()}->{replacement or '(dropped)'}")
                    if not replacement:
                        if out and out[-1].text.isspace():
                            out.pop()  # one space, not two, where the word was
                        tok = None
                    else:
                        tok = _Tok(_cased(replacement, tok.text), tok.label)
                    break
                x -= rate
        if tok is not None:
            out.append(tok)
    return out


def _word_runs(toks: list[_Tok], words: frozenset[str]) -> list[list[int]]:
    """Indexes of word tokens in ``words`` that follow each other with only spaces between."""
    runs, cur = [], []
    for i, tok in enumerate(toks):
        if tok.text.isspace():
            continue
        if tok.text.lower() in words:
            cur.append(i)
        else:
            if len(cur) >= 3:
                runs.append(cur)
            cur = []
    if len(cur) >= 3:
        runs.append(cur)
    return runs


def _inside(toks: list[_Tok], a: int, b: int) -> Label:
    """The label a token inserted between toks[a] and toks[b] belongs to."""
    return toks[a].label if toks[a].label == toks[b].label else None


def _fillers(toks: list[_Tok], rng: random.Random, noise: set[str]) -> list[_Tok]:
    for run in reversed(_word_runs(toks, _NUMBER_WORDS)):
        if rng.random() < RATES["filler"]:
            k = rng.randrange(len(run) - 1)
            a, b = run[k], run[k + 1]
            filler = rng.choice(FILLER_WORDS)
            label = _inside(toks, a, b)
            toks[a + 1 : a + 1] = [_Tok(" ", label), _Tok(filler, label)]
            noise.add("filler")
    return toks


def _wrong_digit(word: str, rng: random.Random) -> str:
    if word.isdigit():
        return word[:-1] + rng.choice([d for d in "0123456789" if d != word[-1]])
    return rng.choice([w for w in DIGIT_WORDS if w != word.lower()])


def _repairs(toks: list[_Tok], rng: random.Random, noise: set[str]) -> list[_Tok]:
    digit_words = frozenset(DIGIT_WORDS + ["oh"])
    for run in reversed(_word_runs(toks, digit_words)):
        if rng.random() < RATES["repair"]:
            i = rng.randrange(1, len(run))
            k = rng.choice((1, 2))
            first = run[i - k + 1]
            label = _inside(toks, run[i - k], run[i])
            said = [toks[j].text for j in run[i - k + 1 : i]]
            wrong = [*said, _wrong_digit(toks[run[i]].text, rng), "sorry"]
            toks[first:first] = [x for w in wrong for x in (_Tok(w, label), _Tok(" ", label))]
            noise.add("repair")
    groups = [i for i, t in enumerate(toks) if t.text.isdigit() and len(t.text) >= 3]
    for gi in reversed(groups[1:]):
        prev = toks[gi - 1] if gi > 0 else None
        if prev is not None and prev.text == " " and rng.random() < RATES["repair_numeral"]:
            label = toks[gi].label
            toks[gi:gi] = [
                _Tok(_wrong_digit(toks[gi].text, rng), label),
                _Tok(" ", label),
                _Tok("sorry", label),
                _Tok(" ", label),
            ]
            noise.add("repair")
    return toks


def _split_points(toks: list[_Tok], types: dict[int, str], number_only: bool) -> list[int]:
    """Spaces inside a secret with some of it on either side."""
    points = []
    for i, tok in enumerate(toks):
        if not tok.text.isspace() or tok.label is None or tok.label[0] != "S":
            continue
        if number_only and types[tok.label[1]] not in NUMBER_TYPES:
            continue
        before = any(t.label == tok.label and not t.text.isspace() for t in toks[:i])
        after = any(t.label == tok.label and not t.text.isspace() for t in toks[i + 1 :])
        if before and after:
            points.append(i)
    return points


def noisy_case(item: dict, rng: random.Random) -> Case:
    """The corpus item as a recognizer might have written it (see the module's table)."""
    noise: set[str] = set()
    toks = _confuse(_tokens(item), rng, noise)
    toks = _fillers(toks, rng, noise)
    toks = _repairs(toks, rng, noise)
    types = {i: s["type"] for i, s in enumerate(item["secrets"])}
    turns = [toks]
    if item["secrets"] and rng.random() < RATES["split_utterance"]:
        points = _split_points(toks, types, number_only=True)
        if points:
            cut = points[len(points) // 3 + rng.randrange(max(1, len(points) // 3))]
            turns = [toks[:cut], toks[cut + 1 :]]
            noise.add("split utterance")
    case = _assemble(item, turns, noise)
    if item["secrets"] and rng.random() < RATES["split_partial"]:
        last = turns[-1]
        points = _split_points(last, types, number_only=False)
        if points:
            cut = rng.choice(points)
            lead = len("".join(t.text for t in last[:cut]).lstrip())
            case.partial = (len(turns) - 1, lead)
            noise.add("split partial")
    return case
