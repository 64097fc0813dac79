"""Authentication, in one place: who may stream media, read the API, and post ACS callbacks.

- ``/media``: ACS signs its websocket handshake with ``Authorization: Bearer <JWT>``
  (RS256, issuer ``https://acscallautomation.communication.azure.com``, audience = the ACS
  resource id, keys at a JWKS URL). `MediaAuth` checks it with PyJWT; keys are fetched by
  `jwt.PyJWKClient` (off the event loop), cached by ``kid``, and refetched when a token
  names a key not seen yet (PyJWT rate-limits those refetches). Only RS256 is accepted, so
  an unsigned (``alg: none``) or HMAC-signed token never reaches a key.
- The event stream and the read/control API: `ApiAuth` (credentials.py) says who a bearer
  token or API JWT is (a `Principal` with roles, roles.py). `ApiAuthMiddleware` requires
  one on ``/events``, ``/experts`` and ``/calls...`` (and the console pages), 401 otherwise, and hands
  it on in the scope: what that principal may do is `guard.py`'s (403). Health, metrics,
  ``/media``, ``/acs/*`` and the console's static files are left alone here. Browsers cannot set headers on a websocket, so a
  websocket may also carry ``?access_token=``; the console gets an HttpOnly cookie instead
  (``/console?token=...`` sets it), which the browser sends on its fetches and sockets.
- ``/acs/*``: callstream puts ``?secret=`` into the callback URLs it hands to ACS;
  `secret_matches` compares it in constant time.

Nothing here logs a token, a secret or a key; `CredentialFilter` (credential_filter.py)
masks any that a log line (uvicorn's, say) carries in a URL or a header, as a second line of defence.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from starlette.requests import cookie_parser

from models.settings import Settings
from pipeline.api.credentials import ApiAuth, access_entries, api_tokens
from pipeline.api.jwt_verifier import AuthError, JwtVerifier
from pipeline.api.roles import PRINCIPAL, AccessFileError, digest

log = logging.getLogger(__name__)

ACS_ISSUER = "https://acscallautomation.communication.azure.com"
MEDIA_ALGORITHMS = ("RS256",)  # what ACS signs with; nothing else is ever accepted on /media
COOKIE = "callstream_token"
ACCESS_TOKEN_PARAM = "access_token"  # websockets only
CONSOLE_TOKEN_PARAM = "token"  # /console?token=... sets the cookie
MEDIA_AUTH_MODES = ("acs-jwt", "off")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


# ---------------------------------------------------------------- settings


def media_auth_mode(settings: Settings) -> str:
    """``acs-jwt`` or ``off``: unset means acs-jwt whenever ACS is configured."""
    if settings.media_auth is None or settings.media_auth.strip() == "":
        return "acs-jwt" if settings.acs_configured else "off"
    mode = settings.media_auth.strip().lower()
    if mode not in MEDIA_AUTH_MODES:
        raise ValueError(f"CALLSTREAM_MEDIA_AUTH={settings.media_auth!r}: use acs-jwt or off")
    return mode


def startup_check(settings: Settings, loopback: bool) -> tuple[list[str], list[str]]:
    """(errors that stop `serve`, warnings it prints) for the security settings."""
    errors: list[str] = []
    warnings: list[str] = []
    try:
        mode = media_auth_mode(settings)
    except ValueError as exc:
        return [str(exc)], []
    if mode == "acs-jwt" and not settings.acs_audience:
        errors.append(
            "CALLSTREAM_MEDIA_AUTH is acs-jwt (the default when ACS is configured) but "
            "CALLSTREAM_ACS_AUDIENCE (the ACS resource id) is not set: ACS's media tokens cannot "
            "be checked. Set it, or CALLSTREAM_MEDIA_AUTH=off for a local emulator"
        )
    if mode == "off" and (settings.acs_configured or not loopback):
        warnings.append(
            "media auth is OFF (CALLSTREAM_MEDIA_AUTH=off): anyone who can reach /media can "
            "stream audio into a call. Use it only with a local emulator or a demo"
        )
    if settings.api_jwt_issuer and not (settings.api_jwt_audience and settings.api_jwks_url):
        errors.append(
            "CALLSTREAM_API_JWT_ISSUER needs CALLSTREAM_API_JWT_AUDIENCE and CALLSTREAM_API_JWKS_URL"
        )
    try:
        access_entries(settings)
    except AccessFileError as exc:
        errors.append(str(exc))

    if not loopback and not settings.metrics_token:
        warnings.append(
            "/metrics is open (live call and payment counts): set CALLSTREAM_METRICS_TOKEN, "
            "or keep the port off networks where that matters"
        )
    if settings.metrics_token is not None and len(settings.metrics_token.strip()) < 16:
        errors.append("CALLSTREAM_METRICS_TOKEN is shorter than 16 characters")
    if any(len(t) < 16 for t in api_tokens(settings)):
        warnings.append("an API token is shorter than 16 characters: use long random tokens")
    if settings.acs_configured and not settings.callback_secret:
        warnings.append(
            "CALLSTREAM_CALLBACK_SECRET is not set: a random one was generated for this process, "
            "so Event Grid deliveries to /acs/events are refused until the subscription's URL "
            "carries it (?secret=...); set it to a fixed value"
        )
    return errors, warnings


def bearer_from_headers(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The token of an ``Authorization: Bearer`` header, or None."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


# ---------------------------------------------------------------- /media


class MediaAuth:
    """The ACS media-streaming handshake check (``CALLSTREAM_MEDIA_AUTH``)."""

    def __init__(self, settings: Settings) -> None:
        self.mode = media_auth_mode(settings)
        self.verifier: JwtVerifier | None = None
        if self.mode == "acs-jwt" and settings.acs_audience:
            self.verifier = JwtVerifier(
                settings.acs_jwks_url, ACS_ISSUER, settings.acs_audience, MEDIA_ALGORITHMS
            )

    async def refusal(self, scope: Scope) -> str | None:
        """Why this handshake is refused, or None to accept it."""
        if self.mode == "off":
            return None
        if self.verifier is None:
            return "media auth is not configured (CALLSTREAM_ACS_AUDIENCE)"  # fail closed
        token = bearer_from_headers(scope.get("headers", []))
        if token is None:
            return "missing bearer token"
        try:
            await self.verifier.verify(token)
        except AuthError as exc:
            return str(exc)
        return None


# ---------------------------------------------------------------- the API


def _protected(path: str) -> bool:
    return path in ("/events", "/calls", "/experts") or path.startswith("/calls/")


def _console_page(path: str) -> bool:
    return path == "/console" or (
        path.startswith("/console/") and not path.startswith("/console/static/")
    )


def _without(query: bytes, name: str) -> tuple[bytes, str | None]:
    """The query string without parameter ``name``, and that parameter's (first) value."""
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    value = next((v for k, v in pairs if k == name), None)
    if value is None:
        return query, None
    return urlencode([(k, v) for k, v in pairs if k != name]).encode("latin-1"), value


def _same_origin(scope: Scope) -> bool:
    """False when a browser says the request comes from another site (CSRF, socket hijack)."""
    origin = _header(scope, b"origin")
    host = (_header(scope, b"host") or "").lower()
    if origin is not None and (origin == "null" or urlsplit(origin).netloc.lower() != host):
        return False
    site = _header(scope, b"sec-fetch-site")
    return site is None or site in ("same-origin", "none")


class ApiAuthMiddleware:
    """Bearer auth on the event stream, the read/control API and the console pages.

    HTTP is refused with 401 and ``WWW-Authenticate: Bearer``; a websocket is accepted and
    closed at once with 1008 (uvicorn turns a close before accept into HTTP 403, which a
    websocket client cannot tell from any other failure). Credentials, in order: the
    ``Authorization`` header; on websockets ``?access_token=`` (removed from the query the
    app sees); the console's cookie, only from this origin.
    """

    def __init__(
        self,
        app: Callable[[Scope, Receive, Send], Awaitable[None]],
        auth: ApiAuth,
        secure_cookie: bool = False,
    ) -> None:
        self.app = app
        self.auth = auth
        self.secure_cookie = secure_cookie

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        path = scope.get("path", "")
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :] or "/"  # what the router matches (behind a path prefix)
        if kind not in ("http", "websocket") or not self.auth.enabled:
            await self.app(scope, receive, send)
            return
        if kind == "http" and _console_page(path):
            await self._console(scope, receive, send)
            return
        if not _protected(path):
            await self.app(scope, receive, send)
            return
        token = bearer_from_headers(scope.get("headers", []))
        from_cookie = False
        if kind == "websocket":
            query, param = _without(scope.get("query_string", b""), ACCESS_TOKEN_PARAM)
            if param is not None:
                scope = {**scope, "query_string": query}
                token = token or param
        if token is None:
            token = self._cookie(scope)
            from_cookie = token is not None
        who = await self.auth.authenticate(token)
        reason = who if isinstance(who, str) else None
        if (
            reason is None
            and from_cookie
            and (kind == "websocket" or scope.get("method") not in ("GET", "HEAD"))
        ):
            if not _same_origin(scope):
                reason = "cross-origin request with the console cookie"
        if reason is None:
            scope[PRINCIPAL] = who
            await self.app(scope, receive, send)
            return
        log.warning(
            "%s %r refused: %s",
            "websocket" if kind == "websocket" else scope.get("method"),
            path,
            reason,
        )
        if kind == "websocket":
            await refuse_websocket(receive, send, "unauthorized")
        else:
            await self._unauthorized(send, given=token is not None)

    @staticmethod
    def _cookie(scope: Scope) -> str | None:
        raw = _header(scope, b"cookie")
        if not raw:
            return None
        value = cookie_parser(raw).get(COOKIE)
        return unquote(value) if value else None

    async def _console(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A console page: ``?token=`` becomes the cookie (then a redirect drops it from the
        address bar); otherwise the cookie or a bearer header must be good."""
        query, param = _without(scope.get("query_string", b""), CONSOLE_TOKEN_PARAM)
        if param is not None:
            if isinstance(await self.auth.authenticate(param), str):
                log.warning("console %s refused: invalid token", scope.get("path"))
                await self._console_unauthorized(send)
                return
            raw_path = scope.get("raw_path") or quote(scope.get("path", "/")).encode()
            location = raw_path.decode("latin-1") + ("?" + query.decode("latin-1") if query else "")
            secure = self.secure_cookie or scope.get("scheme") == "https"
            cookie = f"{COOKIE}={quote(param, safe='')}; Path=/; HttpOnly; SameSite=Lax" + (
                "; Secure" if secure else ""
            )
            await send({
                "type": "http.response.start", "status": 303,
                "headers": [(b"location", location.encode("latin-1")), (b"set-cookie", cookie.encode("latin-1")),
                            (b"cache-control", b"no-store"), (b"referrer-policy", b"no-referrer"),
                            (b"content-length", b"0")],
            })  # fmt: skip
            await send({"type": "http.response.body", "body": b""})
            return
        token = bearer_from_headers(scope.get("headers", [])) or self._cookie(scope)
        who = await self.auth.authenticate(token)
        if not isinstance(who, str):
            scope[PRINCIPAL] = who
            await self.app(scope, receive, send)
            return
        await self._console_unauthorized(send)

    @staticmethod
    async def _unauthorized(send: Send, given: bool) -> None:
        challenge = 'Bearer realm="callstream"' + (', error="invalid_token"' if given else "")
        body = b'{"error":"unauthorized"}'
        await send({
            "type": "http.response.start", "status": 401,
            "headers": [(b"content-type", b"application/json"), (b"www-authenticate", challenge.encode()),
                        (b"content-length", str(len(body)).encode())],
        })  # fmt: skip
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    async def _console_unauthorized(send: Send) -> None:
        body = (
            b"This console needs an API token: open it as /console?token=YOUR_TOKEN "
            b"(one of CALLSTREAM_API_TOKENS). The token is kept in a cookie, not in the address.\n"
        )
        await send({
            "type": "http.response.start", "status": 401,
            "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"www-authenticate", b'Bearer realm="callstream"'),
                        (b"cache-control", b"no-store"), (b"content-length", str(len(body)).encode())],
        })  # fmt: skip
        await send({"type": "http.response.body", "body": body})


async def refuse_websocket(receive: Receive, send: Send, reason: str) -> None:
    """Refuse a websocket so that the client sees close code 1008 (policy violation).

    uvicorn answers a close sent before the accept with a plain HTTP 403, so the client
    would never see 1008: accept, then close at once, before reading a single message.
    """
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.close", "code": 1008, "reason": reason[:120]})


# ---------------------------------------------------------------- ACS callbacks


def secret_matches(given: str | None, expected: str) -> bool:
    """Constant-time check of a callback's ``?secret=``."""
    if not given:
        return False
    return hmac.compare_digest(digest(given), digest(expected))
