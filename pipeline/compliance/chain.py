"""The tamper-evident chain over a call's stored events.

Each event's link is SHA-256 over the previous link and the event's exact stored bytes
(the JSON that was published); the first link starts from a genesis value bound to the
call id. Changing one character of an event, deleting one, or swapping two changes every
link from there on, so an export that carries the links (its manifest) can name the first
event that no longer matches.
"""

from __future__ import annotations

import hashlib

__all__ = ["genesis", "link"]

VERSION = "callstream-chain/1"


def genesis(call_id: str) -> str:
    return hashlib.sha256(f"{VERSION} {call_id}".encode()).hexdigest()


def link(previous: str, body: bytes) -> str:
    return hashlib.sha256(bytes.fromhex(previous) + body).hexdigest()
