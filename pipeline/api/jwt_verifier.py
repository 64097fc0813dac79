"""JWT verification against a JWKS: the one check behind ACS media tokens and API JWTs."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import jwt

log = logging.getLogger(__name__)

LEEWAY_S = 30  # clock skew allowed on exp/nbf/iat
JWKS_TIMEOUT_S = 5.0
JWKS_LIFESPAN_S = 3600.0  # the cached key set is refetched this often (and on an unknown kid)
MAX_TOKEN_BYTES = 8192


class AuthError(Exception):
    """A credential was refused; the message is a fixed phrase, never the credential."""


class JwtVerifier:
    """Checks a JWT's signature against a JWKS, and its issuer, audience and expiry.

    The key client is PyJWT's: keys are cached by ``kid`` and the key set is refetched
    when a token names an unknown one. A key that stays cached keeps verifying while the
    JWKS endpoint is unreachable, so an outage of the key endpoint does not refuse every
    call; a key removed from the set stays trusted until the process restarts.
    """

    def __init__(
        self, jwks_url: str, issuer: str, audience: str, algorithms: tuple[str, ...]
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.algorithms = list(algorithms)
        self._keys = jwt.PyJWKClient(
            jwks_url, cache_keys=True, lifespan=JWKS_LIFESPAN_S, timeout=JWKS_TIMEOUT_S
        )

    async def verify(self, token: str) -> dict[str, Any]:
        """The token's claims; raises AuthError. Key fetches block, so this runs in a thread."""
        return await asyncio.to_thread(self._verify, token)

    def _verify(self, token: str) -> dict[str, Any]:
        if len(token) > MAX_TOKEN_BYTES:
            raise AuthError("token too large")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError("malformed token") from None
        if header.get("alg") not in self.algorithms:
            raise AuthError("unsupported token algorithm")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthError("token names no signing key")
        try:
            key = self._keys.get_signing_key(kid)
        except jwt.PyJWKClientConnectionError as exc:
            log.error("signing keys unavailable (%s)", type(exc.__cause__ or exc).__name__)
            raise AuthError("signing keys unavailable") from None
        except jwt.PyJWTError:
            raise AuthError("unknown signing key") from None
        try:
            return jwt.decode(
                token,
                key.key,
                algorithms=self.algorithms,
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_S,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.InvalidAudienceError:
            raise AuthError("wrong audience") from None
        except jwt.InvalidIssuerError:
            raise AuthError("wrong issuer") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError(f"token lacks the {exc.claim} claim") from None
        except jwt.InvalidSignatureError:
            raise AuthError("bad signature") from None
        except jwt.ImmatureSignatureError:
            raise AuthError("token not yet valid") from None
        except jwt.PyJWTError:
            raise AuthError("invalid token") from None
