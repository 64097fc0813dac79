"""Who a caller is: a role, a name for the audit and, for an agent, the raw ids that are them.

A contact center hands tokens to people with different jobs, and what each may do is a
matter of least privilege (README, "Roles"): an agent sees their own calls, a supervisor
every call live, compliance the records, an integration (a CRM) the control plane, an
admin everything. A caller is a `Principal`; where it comes from:

- ``CALLSTREAM_API_TOKENS``: admin tokens (as before roles existed);
- ``CALLSTREAM_ACCESS_FILE`` (and the ``[[token]]`` tables of a config file): one table per
  token, with ``token`` (or its ``token_sha256``, so the file need not hold the secret),
  ``role``, ``name`` and, for an agent, ``participants`` (raw ids such as ``8:orgid:...``);
- an API JWT: Entra app roles in the ``roles`` claim (``Callstream.Agent`` ...), the agent
  as ``8:orgid:<oid>``, the name from ``preferred_username`` or ``name``. A valid JWT
  without a known role is a principal with no role: authenticated (not 401), refused
  everywhere (403).
"""

from __future__ import annotations

import hashlib
import hmac
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

Role = Literal["agent", "supervisor", "compliance", "integration", "admin"]
ROLES: tuple[str, ...] = get_args(Role)
# Entra app roles (the `roles` claim of an API JWT) and the role each one grants.
APP_ROLES: dict[str, str] = {f"Callstream.{r.capitalize()}": r for r in ROLES}
PRINCIPAL = "callstream.principal"  # the ASGI scope key the middleware sets
GRANT = "callstream.grant"  # and the one `guard.py` sets: "all" or "own" on this route
TEAMS_USER = "8:orgid:"  # how a Teams user (an Entra object id) appears in a call
MIN_TOKEN = 16


class AccessFileError(ValueError):
    """A bad access file or [[token]] table: one line naming the file and the entry."""


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. ``participants`` are the raw ids an agent appears as."""

    roles: frozenset[str]
    name: str
    participants: frozenset[str] = field(default_factory=frozenset)

    @property
    def role(self) -> str:
        """The one role to write in the audit (the widest, when a JWT carries several)."""
        for role in reversed(ROLES):
            if role in self.roles:
                return role
        return "none"


# When API auth is off (no tokens, no issuer, no access file): the laptop and the demo.
LOCAL = Principal(frozenset({"admin"}), "local (API auth off)")


def digest(token: str) -> bytes:
    # Hashing first makes the comparison constant-time in the token's length too.
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True)
class TokenEntry:
    sha256: bytes
    principal: Principal


def _entry(table: Any, where: str) -> TokenEntry:
    if not isinstance(table, Mapping):
        raise AccessFileError(f"{where}: must be a [[token]] table")
    unknown = set(table) - {"token", "token_sha256", "role", "name", "participants"}
    if unknown:
        raise AccessFileError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    role, name = table.get("role"), table.get("name")
    if role not in ROLES:
        raise AccessFileError(f"{where}: role must be one of {', '.join(ROLES)}, not {role!r}")
    if not isinstance(name, str) or not name.strip():
        raise AccessFileError(f"{where}: needs a name (who, for the audit)")
    token, hashed = table.get("token"), table.get("token_sha256")
    if (token is None) == (hashed is None):
        raise AccessFileError(f"{where}: needs exactly one of token and token_sha256")
    if token is not None:
        if not isinstance(token, str) or len(token.strip()) < MIN_TOKEN:
            raise AccessFileError(f"{where}: token must be at least {MIN_TOKEN} characters")
        sha = digest(token.strip())
    else:
        try:
            sha = bytes.fromhex(str(hashed))
        except ValueError:
            sha = b""
        if len(sha) != 32:
            raise AccessFileError(f"{where}: token_sha256 must be 64 hex digits")
    participants = table.get("participants", [])
    if not isinstance(participants, list) or not all(
        isinstance(p, str) and p.strip() for p in participants
    ):
        raise AccessFileError(f"{where}: participants must be a list of raw ids")
    if participants and role != "agent":
        raise AccessFileError(f"{where}: only an agent has participants")
    if role == "agent" and not participants:
        raise AccessFileError(f"{where}: an agent needs participants (the raw ids they call as)")
    who = Principal(frozenset({role}), name.strip(), frozenset(p.strip() for p in participants))
    return TokenEntry(sha, who)


def load_entries(tables: Iterable[Any], where: str) -> list[TokenEntry]:
    entries = [_entry(t, f"{where}: [[token]] #{i}") for i, t in enumerate(tables, 1)]
    seen: set[bytes] = set()
    for i, e in enumerate(entries, 1):
        if e.sha256 in seen:
            raise AccessFileError(f"{where}: [[token]] #{i} repeats a token")
        seen.add(e.sha256)
    return entries


def read_access_file(path: str) -> list[TokenEntry]:
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AccessFileError(f"CALLSTREAM_ACCESS_FILE {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AccessFileError(f"CALLSTREAM_ACCESS_FILE {path}: cannot read it ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise AccessFileError(f"CALLSTREAM_ACCESS_FILE {path}: not valid TOML: {exc}") from None
    unknown = set(data) - {"token"}
    if unknown:
        raise AccessFileError(f"CALLSTREAM_ACCESS_FILE {path}: unknown key(s) {sorted(unknown)}")
    tables = data.get("token", [])
    if not isinstance(tables, list):
        raise AccessFileError(f"CALLSTREAM_ACCESS_FILE {path}: token must be [[token]] tables")
    return load_entries(tables, f"CALLSTREAM_ACCESS_FILE {path}")


def match(token: str, entries: Iterable[TokenEntry]) -> Principal | None:
    """The entry ``token`` is, compared against every entry (no early exit)."""
    given = digest(token)
    found: Principal | None = None
    for entry in entries:
        if hmac.compare_digest(given, entry.sha256):
            found = entry.principal
    return found


def from_claims(claims: Mapping[str, Any]) -> Principal:
    """The principal an API JWT names (its app roles; unknown ones are ignored)."""
    raw = claims.get("roles", [])
    names = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
    roles = frozenset(APP_ROLES[r] for r in names if isinstance(r, str) and r in APP_ROLES)
    oid = claims.get("oid")
    ids = (
        frozenset({TEAMS_USER + oid})
        if isinstance(oid, str) and oid and "agent" in roles
        else frozenset()
    )
    name = claims.get("preferred_username") or claims.get("name") or claims.get("sub") or "jwt"
    return Principal(roles, str(name)[:200], ids)


def actor(scope: Mapping[str, Any]) -> dict[str, str]:
    """Who did it, for the audit record of a control or compliance action."""
    who = scope.get(PRINCIPAL) or LOCAL
    return {"by": who.name, "byRole": who.role}
