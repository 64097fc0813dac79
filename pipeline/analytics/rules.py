"""Category rules: a TOML file of `[[rule]]` tables (`CALLSTREAM_CATEGORIES_FILE`), or the
default set shipped in `assets/categories.toml`.

Two kinds, one table shape:

    [[rule]]
    name = "wants-to-cancel"        # unique; the alert's `rule`
    category = "churn-risk"         # what the call is counted under
    severity = "high"               # info | low | medium | high | critical
    role = "customer"               # agent | customer | any (default)
    phrases = ["cancel my account"] # a phrase rule: matched in redacted finals

    [[rule]]
    name = "dead-air"
    category = "silence"
    metric = "silence"              # nobody speaking for `seconds`
    seconds = 20

Metric rules: `silence` (`seconds`), `sentiment` (a participant of `role` scored below
`below` for `utterances` finals in a row), `interruptions` (more than `per_minute`
interruptions by `role` in the last minute). The file is read and checked once, at start:
a mistake stops `serve` with one line naming the file, the rule and the field.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

import msgspec

Severity = Literal["info", "low", "medium", "high", "critical"]
RoleName = Literal["agent", "customer", "any"]
Metric = Literal["silence", "sentiment", "interruptions"]
SETTING = "CALLSTREAM_CATEGORIES_FILE"


# The fields each kind of rule reads; any other of these set on a rule is a mistake.
_KIND_FIELDS: dict[str, set[str]] = {
    "all": {"seconds", "below", "utterances", "per_minute"},
    "phrases": set(),
    "silence": {"seconds"},
    "sentiment": {"below", "utterances"},
    "interruptions": {"per_minute"},
}


class RulesError(ValueError):
    """The categories file cannot be used; the message names it and the rule."""


class _RuleSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: str
    category: str
    severity: Severity = "medium"
    role: RoleName = "any"
    phrases: list[str] = []
    metric: Metric | None = None
    seconds: float | None = None
    below: float | None = None
    utterances: int | None = None
    per_minute: float | None = None


class _RulesFile(msgspec.Struct, forbid_unknown_fields=True):
    rule: list[_RuleSpec] = []


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    category: str
    severity: str
    role: str  # agent | customer | any
    metric: str | None = None  # None: a phrase rule
    pattern: re.Pattern[str] | None = None  # phrase rules: any phrase, on word boundaries
    seconds: float = 0.0
    below: float = 0.0
    utterances: int = 0
    per_minute: float = 0.0

    def applies_to(self, role: str) -> bool:
        """A speaker of no known role (mixed audio) may be anyone: every rule applies, so
        a mixed call's "speak to a manager" alerts rather than going unnoticed."""
        return self.role in ("any", role) or role == "unknown"


_NOT_WORD = re.compile(r"[^\w]+")


def normalize(text: str) -> str:
    """Lower case, punctuation as space, one space between words: what phrases match."""
    return " ".join(_NOT_WORD.sub(" ", text.casefold()).split())


def _phrase_pattern(phrases: list[str]) -> re.Pattern[str] | None:
    words = sorted({normalize(p) for p in phrases if normalize(p)}, key=len, reverse=True)
    if not words:
        return None
    return re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, words)) + r")(?!\w)")


def _check(spec: _RuleSpec, where: str) -> Rule:
    def need(field: str, value: float | int | None, low: float, strict: bool = False) -> float:
        if value is None:
            raise RulesError(f"{where}: metric {spec.metric!r} needs {field}")
        if not math.isfinite(value):
            raise RulesError(f"{where}: {field} must be a finite number")
        if value < low or (strict and value == low):
            raise RulesError(f"{where}: {field} must be {'above' if strict else 'at least'} {low}")
        return value

    if not spec.name.strip() or not spec.category.strip():
        raise RulesError(f"{where}: name and category must not be blank")
    given = {f for f in _KIND_FIELDS["all"] if getattr(spec, f) is not None}
    allowed = _KIND_FIELDS.get(spec.metric or "phrases", set())
    stray = sorted(given - allowed)
    if stray and (spec.metric is not None or spec.phrases):  # (neither: said below)
        kind = f"metric {spec.metric!r}" if spec.metric else "a phrase rule"
        raise RulesError(f"{where}: {', '.join(stray)} does not apply to {kind}")
    if spec.metric is None:
        pattern = _phrase_pattern(spec.phrases)
        if pattern is None:
            raise RulesError(f"{where}: a rule needs phrases (non-blank) or a metric")
        return Rule(spec.name, spec.category, spec.severity, spec.role, pattern=pattern)
    if spec.phrases:
        raise RulesError(f"{where}: a rule has phrases or a metric, not both")
    base = (spec.name, spec.category, spec.severity, spec.role, spec.metric)
    if spec.metric == "silence":
        return Rule(*base, seconds=need("seconds", spec.seconds, 0, strict=True))
    if spec.metric == "sentiment":
        below = need("below", spec.below, -1.0)
        if below > 1.0:
            raise RulesError(f"{where}: below must be between -1 and 1")
        return Rule(*base, below=below, utterances=int(need("utterances", spec.utterances, 1)))
    return Rule(*base, per_minute=need("per_minute", spec.per_minute, 0))


def parse_rules(data: bytes, source: str) -> tuple[Rule, ...]:
    try:
        doc = msgspec.toml.decode(data, type=_RulesFile)
    except msgspec.ValidationError as exc:
        raise RulesError(f"{source}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise RulesError(f"{source}: not valid TOML ({exc})") from None
    rules: list[Rule] = []
    seen: set[str] = set()
    for i, spec in enumerate(doc.rule):
        where = f"{source}: rule {i + 1} ({spec.name!r})"
        if spec.name in seen:
            raise RulesError(f"{where}: a second rule of that name")
        seen.add(spec.name)
        rules.append(_check(spec, where))
    return tuple(rules)


def load_rules(path: str | None) -> tuple[Rule, ...]:
    """The rules of ``path``, or the shipped default set when it is unset."""
    if not path:
        data = (resources.files("pipeline.analytics") / "assets" / "categories.toml").read_bytes()
        return parse_rules(data, "the default categories")
    source = f"{SETTING}={path}"
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise RulesError(f"{source}: no such file") from None
    except IsADirectoryError:
        raise RulesError(f"{source}: is a directory") from None
    except OSError as exc:
        raise RulesError(f"{source}: cannot read it ({exc.strerror or exc})") from None
    return parse_rules(data, source)


def rules_problems(path: str | None) -> list[str]:
    """For `serve`'s start-up check: what is wrong with the categories file, one line."""
    try:
        load_rules(path)
    except RulesError as exc:
        return [str(exc)]
    return []
