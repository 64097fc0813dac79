"""``CALLSTREAM_EXPERTS``: the Teams experts an agent may ask into a call.

"Name=<Entra object id>" pairs, comma-separated, in the order the console lists them:

    CALLSTREAM_EXPERTS="Billing desk=6f1c2a4e-0b7d-4c55-9a1e-2d3f4b5c6d7e, Fraud team=..."

A pair without "=", an empty name, an id that is not a GUID or a name given twice stops
`callstream serve` at start (one line naming the setting), never at the first consult.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from models.settings import Settings, env_name
from pipeline.api.wire import ENTRA_OBJECT_ID

SETTING = env_name("experts")
MAX_NAME = 256  # what `POST /calls/{callId}/consult` takes as a displayName
_GUID = re.compile(ENTRA_OBJECT_ID)


class ExpertsError(ValueError):
    """A bad ``CALLSTREAM_EXPERTS``: one line naming the setting and the entry."""


@dataclass(frozen=True)
class Expert:
    name: str
    teams_user_id: str  # the Entra object id, lower case


def is_object_id(value: str) -> bool:
    """An Entra object id (a GUID), exactly (no surrounding space, no final newline)."""
    return _GUID.fullmatch(value) is not None


def parse_experts(text: str | None) -> tuple[Expert, ...]:
    """The experts ``text`` names, in its order; ExpertsError for the first bad entry.
    Entries are separated by commas; blank ones (a trailing comma) are skipped."""
    experts: list[Expert] = []
    names: set[str] = set()
    ids: set[str] = set()
    for n, part in enumerate((text or "").split(","), 1):
        entry = part.strip()
        if not entry:
            continue
        if "=" not in entry:
            raise ExpertsError(f'{SETTING}: entry #{n} is not "Name=<Entra object id>"')
        name, _, oid = (s.strip() for s in entry.rpartition("="))
        if not name:
            raise ExpertsError(f"{SETTING}: entry #{n} has no name before '='")
        if not is_object_id(oid):
            raise ExpertsError(
                f"{SETTING}: entry #{n} ({name!r}): the id is not an Entra object id (a GUID)"
            )
        if len(name) > MAX_NAME:
            raise ExpertsError(f"{SETTING}: entry #{n}: the name is over {MAX_NAME} characters")
        if name.casefold() in names:
            raise ExpertsError(f"{SETTING}: entry #{n}: the name {name!r} is given twice")
        oid = oid.lower()
        if oid in ids:
            raise ExpertsError(f"{SETTING}: entry #{n} ({name!r}) repeats another entry's id")
        names.add(name.casefold())
        ids.add(oid)
        experts.append(Expert(name, oid))
    return tuple(experts)


def expert_problems(settings: Settings) -> list[str]:
    """The errors that stop `serve` (the start-up check): a bad ``CALLSTREAM_EXPERTS``."""
    try:
        parse_experts(settings.experts)
    except ExpertsError as exc:
        return [str(exc)]
    return []
