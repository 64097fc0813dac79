"""API credentials: which principal (`roles.py`) a bearer token or an API JWT is.

Static tokens are compared as SHA-256 digests in constant time, every entry every time;
JWTs are checked by `JwtVerifier` (asymmetric algorithms only: a JWKS never verifies an
HMAC token) and mapped to a principal by their app roles.
"""

from __future__ import annotations

from models.settings import Settings
from pipeline.api.jwt_verifier import AuthError, JwtVerifier
from pipeline.api.roles import (
    AccessFileError,
    Principal,
    TokenEntry,
    digest,
    from_claims,
    load_entries,
    match,
    read_access_file,
)

API_ALGORITHMS = ("RS256", "ES256")


def api_tokens(settings: Settings) -> list[str]:
    return [t.strip() for t in settings.api_tokens.split(",") if t.strip()]


def api_auth_enabled(settings: Settings) -> bool:
    return bool(
        api_tokens(settings) or settings.api_jwt_issuer or settings.access_file or settings.token
    )


class ApiAuth:
    """Who an API credential is: a static token (``CALLSTREAM_API_TOKENS``: admin), an
    access-file token (its role), or a JWT from one issuer (its app roles); `roles.py`."""

    def __init__(self, settings: Settings) -> None:
        self._entries = access_entries(settings)
        self.jwt: JwtVerifier | None = None
        if settings.api_jwt_issuer and settings.api_jwt_audience and settings.api_jwks_url:
            self.jwt = JwtVerifier(
                settings.api_jwks_url,
                settings.api_jwt_issuer,
                settings.api_jwt_audience,
                API_ALGORITHMS,
            )
        # Fail closed: an access file that names no token still means "auth is on".
        self.enabled = api_auth_enabled(settings)

    async def authenticate(self, token: str | None) -> Principal | str:
        """The caller, or why ``token`` is refused."""
        if token is None:
            return "missing bearer token"
        found = match(token, self._entries)  # every entry compared: no early exit
        if found is not None:
            return found
        if self.jwt is not None and token.count(".") == 2:
            try:
                return from_claims(await self.jwt.verify(token))
            except AuthError as exc:
                return str(exc)
        return "invalid token"


def access_entries(settings: Settings) -> list[TokenEntry]:
    """Every static token: the admin tokens, the access file's, the config file's.
    Raises AccessFileError (one line) for a bad file or entry."""
    entries = [
        TokenEntry(digest(t), Principal(frozenset({"admin"}), f"CALLSTREAM_API_TOKENS #{i}"))
        for i, t in enumerate(api_tokens(settings), 1)
    ]
    if settings.access_file:
        from_file = read_access_file(settings.access_file)
        if not from_file:
            raise AccessFileError(
                f"CALLSTREAM_ACCESS_FILE {settings.access_file}: names no [[token]]"
            )
        entries += from_file
    if settings.token:
        entries += load_entries(settings.token, "the config file")
    seen: set[bytes] = set()
    for e in entries:
        if e.sha256 in seen:
            raise AccessFileError(f"a token of {e.principal.name!r} is given twice")
        seen.add(e.sha256)
    return entries
