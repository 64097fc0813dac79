"""Recall and keep of the Redactor on the redaction corpora, clean and with recognizer noise.

Every case of ``tests/redaction_corpus.jsonl``, ``tests/redaction_holdout.jsonl`` and (when
present) the blind ``tests/redaction_blind.jsonl`` is run as written, then ``--variants``
times through the noise model of ``bench/recognizer_noise.py`` (seeded: ``--seed``), and
the two are printed side by side per entity type.

Each case goes through the call's real redaction path, not the Redactor alone:
``CallRedaction`` (context of the previous turns, the call's known values, sticky values
of an utterance's partials, a number left open by the previous utterance) on a
synchronous queue, and ``hold_back_unfinished`` for partials, as the service does. A
secret counts as removed when every letter and digit of it is inside a redacted span in
the final of its utterance and in what a partial of it showed (a visible "um", "sorry",
"and then" or comma inside a number leaks nothing; ``tests/test_redaction_corpus.py``
counts every non-space character, so its figures can be a hair lower). A case "keeps"
when each number it marks as harmless comes through untouched (negatives of the blind
corpus mark their whole text). Secrets of the blind corpus all carry their line's main
type, so its per-type rows mix types on lines with more than one.

    .venv/bin/python bench/redaction_noise.py                     # 3 noisy variants, seed 18, ~15 s
    .venv/bin/python bench/redaction_noise.py --variants 10 --misses --json /tmp/noise.json
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from recognizer_noise import Case, clean_case, noisy_case  # noqa: E402

from models.speech import SpeechResult  # noqa: E402
from pipeline.ingest.call_redaction import CallRedaction  # noqa: E402
from pipeline.privacy.partials import hold_back_unfinished  # noqa: E402
from pipeline.privacy.recognizers import KnownValuesRecognizer  # noqa: E402
from pipeline.privacy.redaction import RedactionResult, Redactor, get_redactor  # noqa: E402

CORPORA = {
    "corpus": REPO / "tests" / "redaction_corpus.jsonl",
    "holdout": REPO / "tests" / "redaction_holdout.jsonl",
    "blind": REPO / "tests" / "redaction_blind.jsonl",
    "blind2": REPO / "tests" / "redaction_blind2.jsonl",
    "dev2": REPO / "tests" / "redaction_dev2.jsonl",
    "dev3": REPO / "tests" / "redaction_dev3.jsonl",
}
# Held out: never printed case by case. The first blind corpus was held out until
# 2026-12-07 23:00 UTC, then opened as a development set when the second one was written.
HELD_OUT = {"blind2"}
_BLIND_TYPES = {"ADDRESS": "STREET_ADDRESS"}
_WORDS = re.compile(r"[a-z0-9']+")  # context words, as tests/test_redaction_corpus.py reads them


def load(path: Path) -> list[dict]:
    """Corpus items in the format of tests/redaction_corpus.jsonl (the blind one converted)."""
    items = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if items and "id" not in items[0]:  # the blind corpus: secrets are strings of one type
        items = [
            {
                "id": f"{path.stem.removeprefix('redaction_')}-{n:03d}",
                "text": i["text"],
                "secrets": [
                    {"type": _BLIND_TYPES.get(i["type"], i["type"]), "value": s}
                    for s in i["secrets"]
                ],
                "keep": [] if i["secrets"] else [i["text"]],
                "noise": i.get("noise", False),
            }
            for n, i in enumerate(items, 1)
        ]
    return items


class _SyncQueue:
    """The redaction runner's contract (policy, redact, record, deliver), in this thread."""

    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor

    def submit(self, job) -> None:
        rr = self.redactor.redact_safe(job.text, job.policy())
        job.redacted(rr)
        job.deliver(rr)

    async def drain(self) -> None:
        pass


class _Known:
    def __init__(self, recognizer: KnownValuesRecognizer | None) -> None:
        self._recognizer = recognizer

    def recognizer(self, call_id: str) -> KnownValuesRecognizer | None:
        return self._recognizer


@dataclass
class Outcome:
    finals: list[RedactionResult]
    partial: RedactionResult | None = None
    partial_visible: int = 0  # characters of the partial's input left visible (not held back)


def _visible_input(rr: RedactionResult, shown: int) -> int:
    """How much of the input a redacted text cut to ``shown`` characters still shows."""
    shift = 0
    for red, ent in zip(rr.redactions, rr.entities, strict=False):
        if shown <= red.start:
            break
        if shown < red.end:
            return ent.end
        shift = ent.end - red.end
    return shown + shift


def run_case(case: Case, redactor: Redactor) -> Outcome:
    known = KnownValuesRecognizer((k["type"], k["value"]) for k in case.known)
    call = CallRedaction("bench", _SyncQueue(redactor), _Known(known or None))
    if case.context:
        call.context.append((0, tuple(_WORDS.findall(case.context.lower()))))
    out = Outcome([])
    got: list[RedactionResult] = []
    for t, text in enumerate(case.turns):
        start = 1000 + 4000 * t
        uid = f"u{t}"
        if case.partial is not None and case.partial[0] == t:
            ptext = text[: case.partial[1]]
            call.result(
                SpeechResult(uid, False, ptext, start, start + 1500), lambda _r, rr: got.append(rr)
            )
            shown = hold_back_unfinished(got[-1])
            out.partial = got[-1]
            out.partial_visible = _visible_input(got[-1], len(shown.text))
        call.result(
            SpeechResult(uid, True, text, start, start + 3000), lambda _r, rr: got.append(rr)
        )
        call.sticky.pop(uid, None)
        out.finals.append(got[-1])
    return out


# Words that carry nothing of a secret: fillers, the repair word ("four five sorry four
# six") and the remark between two groups ("four one one one and then ...").
# Fillers and repair words inside a secret's span leak nothing ("jack hat hotmail dot com
# no jack add hotmail dot com": the "no" between the two tries).
_EMPTY_WORD = re.compile(r"(?i)(?<![a-z'])(?:um+|uh+|er|erm|hmm|sorry|no|wait|and|then)(?![a-z'])")


def _covered(entities, text: str, start: int, end: int) -> bool:
    """Every letter and digit of text[start:end] is inside a redacted span (fillers aside)."""
    empty = {i for m in _EMPTY_WORD.finditer(text, start, end) for i in range(*m.span())}
    return all(
        not text[i].isalnum() or i in empty or any(e.start <= i < e.end for e in entities)
        for i in range(start, end)
    )


@dataclass
class Score:
    recall: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0, 0]))
    negatives: list[int] = field(default_factory=lambda: [0, 0])
    keeps: list[int] = field(default_factory=lambda: [0, 0])
    by_noise: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    misses: list[str] = field(default_factory=list)

    def add(self, case: Case, out: Outcome) -> None:
        for s in case.secrets:
            final = out.finals[s.turn]
            text = case.turns[s.turn]
            ok = _covered(final.entities, text, s.start, s.end)
            if ok and out.partial is not None and case.partial[0] == s.turn:
                ok = _covered(out.partial.entities, text, s.start, min(s.end, out.partial_visible))
            row = self.recall[s.type]
            row[2] += 1
            row[0] += ok
            row[1] += ok and any(
                e.type == s.type and e.start < s.end and s.start < e.end for e in final.entities
            )
            for n in case.noise or {"(none)"}:
                self.by_noise[n][0] += ok
                self.by_noise[n][1] += 1
            if not ok:
                shown = [f.text for f in out.finals]
                if out.partial is not None:
                    cut = case.turns[case.partial[0]][: case.partial[1]]
                    shown.append(f"partial {cut!r} -> shows {out.partial_visible} chars")
                self.misses.append(
                    f"{case.id} {sorted(case.noise)}: {s.type} {case.turns!r} -> {shown}"
                )
        kept = all(value in out.finals[t].text for t, value in case.keeps)
        bucket = self.keeps if case.secrets else self.negatives
        bucket[0] += kept
        bucket[1] += 1
        if not kept:
            self.misses.append(f"{case.id} {sorted(case.noise)}: keep {case.turns!r}")


def score(cases: list[Case], redactor: Redactor | None = None) -> Score:
    redactor = redactor or get_redactor()
    result = Score()
    for case in cases:
        result.add(case, run_case(case, redactor))
    return result


def noisy_cases(items: list[dict], seed: int, variants: int) -> list[Case]:
    rng = random.Random(seed)
    return [noisy_case(item, rng) for _ in range(variants) for item in items]


def pct(row: list[int]) -> str:
    found, total = row[0], row[-1]
    return f"{found}/{total} ({found / total:.1%})" if total else "-"


def table(clean: Score, noisy: Score) -> str:
    lines = [
        "| entity | clean removed | clean typed | noisy removed | noisy typed |",
        "|---|---:|---:|---:|---:|",
    ]
    for t in sorted(set(clean.recall) | set(noisy.recall)):
        c, n = clean.recall.get(t, [0, 0, 0]), noisy.recall.get(t, [0, 0, 0])
        lines.append(f"| {t} | {pct(c)} | {pct([c[1], c[2]])} | {pct(n)} | {pct([n[1], n[2]])} |")
    lines.append(f"| negatives kept intact | {pct(clean.negatives)} | | {pct(noisy.negatives)} | |")
    lines.append(f"| numbers kept beside secrets | {pct(clean.keeps)} | | {pct(noisy.keeps)} | |")
    return "\n".join(lines)


def noise_table(noisy: Score) -> str:
    lines = ["| noise class in the case | secrets | removed |", "|---|---:|---:|"]
    for n, row in sorted(noisy.by_noise.items()):
        lines.append(f"| {n} | {row[1]} | {pct(row)} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description="redaction recall, clean and with recognizer noise")
    ap.add_argument("--seed", type=int, default=18)
    ap.add_argument("--variants", type=int, default=3, help="noisy copies of each case")
    ap.add_argument("--corpora", default="corpus,holdout,blind,dev2,dev3,blind2")
    ap.add_argument(
        "--misses", action="store_true", help="print every miss (not for held-out corpora)"
    )
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    redactor = get_redactor()
    report = {}
    for name in args.corpora.split(","):
        path = CORPORA[name]
        if not path.exists():
            print(f"# {name}: {path} not found, skipped")
            continue
        items = load(path)
        t0 = time.perf_counter()
        clean = score([clean_case(i) for i in items], redactor)
        noisy = score(noisy_cases(items, args.seed, args.variants), redactor)
        took = time.perf_counter() - t0
        print(f"\n## {name}: {len(items)} cases clean, {len(items) * args.variants} noisy")
        print(f"(seed {args.seed}, {args.variants} variants, {took:.1f} s)\n")
        print(table(clean, noisy))
        print("\n" + noise_table(noisy))
        if args.misses and name not in HELD_OUT:
            for line in clean.misses:
                print("  clean miss:", line)
            for line in noisy.misses:
                print("  noisy miss:", line)
        report[name] = {
            "clean": {
                "recall": dict(clean.recall),
                "negatives": clean.negatives,
                "keeps": clean.keeps,
            },
            "noisy": {
                "recall": dict(noisy.recall),
                "negatives": noisy.negatives,
                "keeps": noisy.keeps,
            },
            "by_noise": dict(noisy.by_noise),
        }
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
