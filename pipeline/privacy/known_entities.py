"""Per-call known values (the caller's name, account number) supplied by the deployment.

A CRM knows who is calling before anyone speaks; ``POST /calls/{callId}/known-entities``
hands those values to callstream so that they are redacted wherever they are said,
however they are said. They are secrets by definition: kept in memory only, never
stored, logged or echoed back, and dropped when the call ends (or after an hour for a
call that never started). With several replicas the values travel as a command to the
replica that streams the call (or, before the call starts, to every replica), never
into a Redis key.
"""

from __future__ import annotations

import re
import time

import msgspec

from pipeline.privacy.common_words import COMMON_WORDS
from pipeline.privacy.recognizers import KnownValuesRecognizer, clean_type

__all__ = ["KnownEntities", "KnownEntitiesRequest", "KnownEntityError"]

MAX_VALUES_PER_CALL = 64
MAX_VALUE_CHARS = 256
# A value shorter than this, or made only of common words ("I", "refund"), would erase
# ordinary speech from the call's record wherever it is said: refused.
MIN_VALUE_CHARS = 3
_WORD = re.compile(r"\w+")

UNCLAIMED_TTL_S = 3600.0


class KnownEntity(msgspec.Struct, forbid_unknown_fields=True):
    type: str
    value: str


class KnownEntitiesRequest(msgspec.Struct, forbid_unknown_fields=True):
    entities: list[KnownEntity]


class KnownEntityError(ValueError):
    """A request the API answers with 400; the message never quotes a value."""


_DECODER = msgspec.json.Decoder(KnownEntitiesRequest)


def parse_request(body: bytes) -> list[tuple[str, str]]:
    try:
        req = _DECODER.decode(body)
    except msgspec.ValidationError as exc:
        # msgspec quotes offending values; only the path is safe to repeat.
        path = str(exc).rsplit(" - at ", 1)[-1] if " - at " in str(exc) else "$"
        raise KnownEntityError(
            f'expected {{"entities": [{{"type": str, "value": str}}]}} (at {path})'
        ) from None
    except msgspec.DecodeError:
        raise KnownEntityError("body is not valid JSON") from None
    out = []
    for i, e in enumerate(req.entities):
        value = e.value.strip()
        if not value:
            raise KnownEntityError(f"entities[{i}].value is empty")
        if len(value) > MAX_VALUE_CHARS:
            raise KnownEntityError(
                f"entities[{i}].value is longer than {MAX_VALUE_CHARS} characters"
            )
        if sum(c.isalnum() for c in value) < MIN_VALUE_CHARS:
            raise KnownEntityError(
                f"entities[{i}].value is shorter than {MIN_VALUE_CHARS} letters or digits"
            )
        if all(w in COMMON_WORDS for w in _WORD.findall(value.casefold())):
            raise KnownEntityError(f"entities[{i}].value is only common words")
        out.append((clean_type(e.type), value))
    if len(out) > MAX_VALUES_PER_CALL:
        raise KnownEntityError(f"at most {MAX_VALUES_PER_CALL} known values per call")
    return out


class _CallValues:
    __slots__ = ("values", "recognizer", "since", "sent")

    def __init__(self) -> None:
        self.sent = 0  # values received, duplicates included (the limit and the answer)
        self.values: list[tuple[str, str]] = []
        self.recognizer: KnownValuesRecognizer | None = None
        self.since = time.monotonic()


class KnownEntities:
    """call id -> known values and the recognizer built from them (rebuilt on change)."""

    def __init__(self) -> None:
        self._calls: dict[str, _CallValues] = {}

    def add(self, call_id: str, values: list[tuple[str, str]]) -> int:
        """Add values for a call; returns how many the call has been sent.

        Duplicates count towards the limit and the answer like new values do: whether a
        value is already there must not change the answer, or the API would confirm a
        guess at a customer's CRM value.
        """
        self._prune()
        entry = self._calls.get(call_id) or _CallValues()
        if entry.sent + len(values) > MAX_VALUES_PER_CALL:
            raise KnownEntityError(f"at most {MAX_VALUES_PER_CALL} known values per call")
        self._calls[call_id] = entry
        entry.sent += len(values)
        merged = entry.values + [v for v in dict.fromkeys(values) if v not in entry.values]
        entry.values = merged
        entry.recognizer = KnownValuesRecognizer(entry.values) or None
        return entry.sent

    def values(self, call_id: str) -> list[tuple[str, str]]:
        """The call's values (for the replica a call is handed over to; never logged)."""
        entry = self._calls.get(call_id)
        return list(entry.values) if entry is not None else []

    def recognizer(self, call_id: str) -> KnownValuesRecognizer | None:
        entry = self._calls.get(call_id)
        return entry.recognizer if entry is not None else None

    def drop(self, call_id: str) -> None:
        self._calls.pop(call_id, None)

    def claim(self, call_id: str) -> None:
        """The call is live: its values stay until it ends, however long it runs."""
        entry = self._calls.get(call_id)
        if entry is not None:
            entry.since = float("inf")

    def _prune(self) -> None:
        cutoff = time.monotonic() - UNCLAIMED_TTL_S
        for call_id in [c for c, e in self._calls.items() if e.since < cutoff]:
            del self._calls[call_id]
