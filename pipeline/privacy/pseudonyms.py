"""A customer's phone number, as it leaves the process: a stable keyed pseudonym.

ACS names a PSTN caller by their phone number (`4:+15550100`). That id would otherwise be
in every event (`participant`), in the store, the exports and the utterance ids, so every
agent desktop, log collector and compliance export would hold a list of who called. The
session swaps it, once, when the participant joins (`CallSession.join`), for
``4:~`` + a keyed hash, so nothing downstream ever sees the number:

    pseudonym(raw) = "4:~" + base32(HMAC-SHA256(key, raw)[:16]).lower()   # 26 characters

- Keyed (HMAC), not a plain hash: a phone number has ~10^11 possible values, so an unkeyed
  hash is reversed by trying them all in minutes. Without the key nothing can be tried.
- Stable: the same number under the same key is the same pseudonym, on every call, every
  replica and after a restart, so a supervisor still sees "this caller, again".
- 128 bits (26 base32 characters): collisions between different numbers stay out of reach
  for all the phone numbers there are (about 2^-49 over 10^12 numbers), and base32 has no
  0, 1, 8 or 9, so no digit run of a number can show through by chance.
- Agents' ids are left as they are: they name staff accounts, and the access rules match
  agents by them. An anonymous Teams guest (`8:teamsvisitor:<guid>`) is a customer but is
  kept too: its id is a random per-join GUID ACS makes, not personal data, and it is what
  the ACS and Teams logs of the call name the guest by.

There is no table back from a pseudonym. Whoever holds the key and has a candidate number
checks it: ``pseudonym("4:+15550100", key) == "4:~..."`` (the function below), or with
no checkout at hand

    python3 -c 'import base64,hashlib,hmac,sys; print("4:~" + base64.b32encode(hmac.new(
      sys.argv[1].encode(), sys.argv[2].encode(), hashlib.sha256).digest()[:16])
      .decode().rstrip("=").lower())' "$CALLSTREAM_PSEUDONYM_KEY" '4:+15550100'

The key: `CALLSTREAM_PSEUDONYM_KEY`, or else one generated into the data dir at first start
(``pseudonym.key``, owner-only) and reused after, so pseudonyms survive restarts. Replicas
that share a store or a bus must share the key (set it), or one caller would have as
many pseudonyms as there are replicas.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.compliance.private_files import open_private, private_dir

if TYPE_CHECKING:
    from models.settings import Settings

PHONE_PREFIX = "4:"  # ACS PhoneNumberIdentifier raw ids
PREFIX = "4:~"  # a published pseudonym: still a `4:` id, so it still reads as a phone line
DIGEST_BYTES = 16  # 128 bits: 26 base32 characters
MIN_KEY_CHARS = 16
KEY_FILE = "pseudonym.key"
SETTING = "CALLSTREAM_PSEUDONYM_KEY"
_AGENT = "agent"  # pipeline.ingest.participants.AGENT (not imported: privacy stays below ingest)


class PseudonymKeyError(ValueError):
    """The pseudonym key is missing, unreadable or too short; the message says which."""


def pseudonym(raw: str, key: str | bytes) -> str:
    """The pseudonym ``raw`` (a raw ACS id, as ACS sends it) is published as under ``key``."""
    secret = key.encode() if isinstance(key, str) else key
    digest = hmac.new(secret, raw.encode(), hashlib.sha256).digest()[:DIGEST_BYTES]
    return PREFIX + base64.b32encode(digest).decode().rstrip("=").lower()


class Pseudonyms:
    """The deployment's rule for the id a participant is published as."""

    __slots__ = ("_key",)

    def __init__(self, key: str) -> None:
        _check_length(key, SETTING)
        self._key = key.encode()

    @classmethod
    def from_settings(cls, settings: Settings) -> Pseudonyms:
        return cls(deployment_key(settings))

    def published(self, raw: str, role: str) -> str:
        """``raw`` as events, the store and the logs may name it: a phone number that is not
        an agent's becomes its pseudonym (a number whose role the site left unknown too:
        it is a number all the same); every other id is returned as it is."""
        if raw.startswith(PHONE_PREFIX) and role != _AGENT:
            return pseudonym(raw, self._key)
        return raw


def deployment_key(settings: Settings) -> str:
    """The key: the setting if given, else the data dir's key file, made at first use."""
    if settings.pseudonym_key is not None:
        _check_length(settings.pseudonym_key, SETTING)
        return settings.pseudonym_key
    path = Path(settings.data_dir) / KEY_FILE
    if not path.exists():
        _create_key_file(path)
    return read_key_file(path)


def read_key_file(path: Path) -> str:
    """The key stored in ``path`` (a generated one: one line of text)."""
    try:
        key = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise PseudonymKeyError(f"the pseudonym key file {path} cannot be read ({exc})") from None
    _check_length(key, f"the pseudonym key file {path}")
    return key


def _create_key_file(path: Path) -> None:
    """Write a new random key to ``path``, owner-only, unless another process (a second
    worker starting at the same moment) got there first: written aside, then linked into
    place, which never replaces a key that is already there."""
    private_dir(path.parent)
    aside = path.with_name(f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        with open_private(aside) as fh:
            fh.write(secrets.token_urlsafe(32).encode() + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(aside, path)
        except FileExistsError:
            pass
    finally:
        aside.unlink(missing_ok=True)


def _check_length(key: str, where: str) -> None:
    if len(key) < MIN_KEY_CHARS:
        raise PseudonymKeyError(
            f"{where} is shorter than {MIN_KEY_CHARS} characters: a short key can be guessed, "
            "and with it every caller's number; use a long random value "
            "(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )


def key_problems(settings: Settings) -> tuple[list[str], list[str]]:
    """(errors that stop `serve`, warnings it prints) for the pseudonym key."""
    if settings.pseudonym_key is not None:
        try:
            _check_length(settings.pseudonym_key, SETTING)
        except PseudonymKeyError as exc:
            return [str(exc)], []
        return [], []
    shared = [
        what
        for what, is_shared in (
            (
                "the store is PostgreSQL",
                settings.store_url.startswith(("postgresql:", "postgres:")),
            ),
            ("the bus is Redis", settings.bus != "memory"),
        )
        if is_shared
    ]
    if not shared:
        return [], []
    return [], [
        f"{SETTING} is not set and {' and '.join(shared)}: each replica generates its own key "
        f"into its data dir ({KEY_FILE}), so one caller gets a different pseudonym on each "
        "replica (and across a media hand-over). Set the same key on every replica"
    ]
