"""Recall and keep rate of the Redactor on utterances as speech recognizers write them.

The corpus (``redaction_corpus.jsonl``) holds lexical ("four one one one ...") and
display ("4111 1111 ...") transcripts with the secrets to remove and the numbers to keep,
some with the previous utterance as context and some with per-call known values. Card
numbers must all go; every other type needs 95% recall; 95% of the negatives must come
through untouched. The table is printed (``pytest -s``) and kept in bench/RESULTS.md.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import pytest

from pipeline.privacy.recognizers import KnownValuesRecognizer
from pipeline.privacy.redaction import RedactionPolicy, Redactor, get_redactor

CORPUS = Path(__file__).parent / "redaction_corpus.jsonl"
_WORDS = re.compile(r"[a-z0-9']+")


def load_corpus(path: Path = CORPUS) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def policy_for(item: dict) -> RedactionPolicy:
    known = KnownValuesRecognizer((k["type"], k["value"]) for k in item.get("known", []))
    context = tuple(_WORDS.findall(item.get("context", "").lower()))
    return RedactionPolicy(known=known or None, context=context)


def covered(span: tuple[int, int], text: str, entities: list) -> bool:
    """Every visible character of the secret lies inside some detected entity."""
    return all(
        text[i].isspace() or any(e.start <= i < e.end for e in entities)
        for i in range(span[0], span[1])
    )


def secret_spans(item: dict) -> list[tuple[str, tuple[int, int]]]:
    spans, used = [], set()
    for s in item["secrets"]:
        start = item["text"].find(s["value"])
        while (start, s["value"]) in used:
            start = item["text"].find(s["value"], start + 1)
        used.add((start, s["value"]))
        spans.append((s["type"], (start, start + len(s["value"]))))
    return spans


@pytest.fixture(scope="module")
def scored() -> dict:
    return score_corpus(CORPUS)


def score_corpus(path: Path) -> dict:
    redactor: Redactor = get_redactor()
    recall: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # found, typed right, total
    negatives = [0, 0]
    keeps = [0, 0]
    misses: list[str] = []
    for item in load_corpus(path):
        result = redactor.redact(item["text"], policy_for(item))
        for entity_type, span in secret_spans(item):
            row = recall[entity_type]
            row[2] += 1
            if covered(span, item["text"], result.entities):
                row[0] += 1
                row[1] += any(
                    e.type == entity_type and e.start < span[1] and span[0] < e.end
                    for e in result.entities
                )
            else:
                misses.append(f"{item['id']}: {entity_type} not removed -> {result.text!r}")
        kept = all(k in result.text for k in item.get("keep", []))
        bucket = negatives if not item["secrets"] else keeps
        bucket[0] += kept
        bucket[1] += 1
        if not kept:
            misses.append(f"{item['id']}: a number to keep was redacted -> {result.text!r}")
    return {"recall": dict(recall), "negatives": negatives, "keeps": keeps, "misses": misses}


def format_table(scored: dict) -> str:
    lines = [
        "| entity | secrets | removed | recall | typed as such |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for entity_type, (found, typed, total) in sorted(scored["recall"].items()):
        lines.append(
            f"| {entity_type} | {total} | {found} | {found / total:.1%} | {typed / total:.1%} |"
        )
    kept, total = scored["negatives"]
    lines.append(f"| negatives kept intact | {total} | {kept} | {kept / total:.1%} | |")
    kept, total = scored["keeps"]
    lines.append(f"| numbers kept beside secrets | {total} | {kept} | {kept / total:.1%} | |")
    return "\n".join(lines)


def test_corpus_is_big_enough_and_well_formed() -> None:
    items = load_corpus()
    assert len(items) >= 150
    for item in items:
        for s in item["secrets"]:
            assert s["value"] in item["text"], item["id"]
        for k in item.get("keep", []):
            assert k in item["text"], item["id"]
    assert sum(1 for i in items if not i["secrets"]) >= 50


def test_recall_per_entity_and_keep_rate(scored: dict) -> None:
    print("\n" + format_table(scored))
    for line in scored["misses"]:
        print("  miss:", line)
    found, _, total = scored["recall"]["CREDIT_CARD"]
    assert found == total, "every card number must be removed"
    for entity_type, (found, _, total) in scored["recall"].items():
        assert found / total >= 0.95, f"{entity_type} recall {found}/{total}"
    kept, total = scored["negatives"]
    assert kept / total >= 0.95, f"negatives kept {kept}/{total}"


HOLDOUT = Path(__file__).parent / "redaction_holdout.jsonl"


def test_held_out_corpus() -> None:
    """A second corpus, written blind to the recognizers by another author.

    Its first run (before any fix it prompted) is in bench/RESULTS.md; cards must all go
    and the negatives must survive here too. Other types are reported, not gated: the
    corpus is small (4-13 per type) and meant to show how far the rules generalize.
    """
    scored = score_corpus(HOLDOUT)
    print("\nheld-out corpus\n" + format_table(scored))
    for line in scored["misses"]:
        print("  miss:", line)
    found, _, total = scored["recall"]["CREDIT_CARD"]
    assert found == total, "every card number must be removed"
    kept, total = scored["negatives"]
    assert kept / total >= 0.95, f"negatives kept {kept}/{total}"
