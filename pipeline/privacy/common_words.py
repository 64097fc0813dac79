"""Words too common to be anyone's secret (`assets/common_words.txt`).

A CRM's known value made only of them would erase ordinary speech from a call's record, so
the known-entities API refuses such a value; and a name's parts that are common words
("Will", "the") are not matched on their own, only within the whole name.
"""

from __future__ import annotations

from importlib import resources


def _load() -> frozenset[str]:
    text = resources.files("pipeline.privacy").joinpath("assets/common_words.txt").read_text()
    lines = (line for line in text.splitlines() if not line.startswith("#"))
    return frozenset(word for line in lines for word in line.split())


COMMON_WORDS = _load()
