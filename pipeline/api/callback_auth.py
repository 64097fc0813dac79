"""Whether a webhook that claims to be ACS's is ACS's: the checks beyond the URL secret.

The ``?secret=`` callstream puts into the callback URLs it hands out ends up in proxy and
ingress logs, and Microsoft's guide calls it the "simple method", which may not be enough
(../shared/ACS-PROTOCOL.md, "Callbacks"). Whoever holds it could post ``CallDisconnected``
for a live call (its payment guard gone for the rest of the call), forge
``RecordingStateChanged``, and write audit rows for calls that do not exist (issue 17). So,
besides the secret:

- Call Automation signs every mid-call callback (``POST /acs/callbacks``) with a fresh RS256
  JWT (5-minute lifetime) from ``https://acscallautomation.communication.azure.com`` for the
  ACS resource's immutable id. With ``CALLSTREAM_ACS_AUDIENCE`` set, that token is required,
  checked by the same `JwtVerifier` (keys from ``CALLSTREAM_ACS_JWKS_URL``) as the media
  handshake's.
- Event Grid (``POST /acs/events``) is another sender: with the three
  ``CALLSTREAM_EVENTGRID_*`` settings, the Microsoft Entra token it sends to an Entra-protected
  endpoint is required.
- A callback counts only for a call this deployment answered, registered, streams, or that
  the cluster registry knows (`CallbackAuth.known_control`); one about any other call is
  answered 200 (ACS would retry anything else) and leaves nothing behind.

Without an audience (an emulator, tests) the secret alone applies. Nothing here logs a token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from models.settings import Settings, env_name
from pipeline.api.auth import ACS_ISSUER, MEDIA_ALGORITHMS, bearer_from_headers
from pipeline.api.jwt_verifier import AuthError, JwtVerifier

if TYPE_CHECKING:
    from pipeline.api.wire import AcsEventData
    from pipeline.pci.recording import CallControl
    from pipeline.service import Service

log = logging.getLogger(__name__)

EVENTGRID_ALGORITHMS = ("RS256",)  # what Entra signs access tokens with
EVENTGRID_SETTINGS = ("eventgrid_jwt_issuer", "eventgrid_jwt_audience", "eventgrid_jwks_url")
# A callback may come before the answer that made its call known has returned; it waits
# for that answer at most this long (the answer itself is bounded well below).
ANSWER_WAIT_S = 10.0


class RegistryUnavailable(Exception):
    """The cluster registry could not say whether it knows a call: answer so ACS retries."""


def callback_startup_check(settings: Settings) -> tuple[list[str], list[str]]:
    """(errors that stop `serve`, warnings it prints) for the webhook settings."""
    errors: list[str] = []
    warnings: list[str] = []
    missing = [env_name(f) for f in EVENTGRID_SETTINGS if not getattr(settings, f)]
    if 0 < len(missing) < len(EVENTGRID_SETTINGS):
        together = ", ".join(env_name(f) for f in EVENTGRID_SETTINGS)
        verb = "is" if len(missing) == 1 else "are"
        errors.append(
            f"Event Grid's Entra tokens need {together} together: "
            f"{' and '.join(missing)} {verb} not set"
        )
    if settings.acs_configured and not settings.acs_audience:
        warnings.append(
            "CALLSTREAM_ACS_AUDIENCE is not set: ACS's callbacks to /acs/callbacks are trusted "
            "on the URL secret alone (which proxy and ingress logs may hold), not on ACS's "
            "signed token. Set it to the ACS resource's immutable id"
        )
    return errors, warnings


class CallbackAuth:
    """The bearer checks of ``/acs/callbacks`` (ACS) and ``/acs/events`` (Event Grid), and
    which calls a callback may concern. One per app (`of`)."""

    def __init__(self, settings: Settings) -> None:
        self.acs: JwtVerifier | None = None
        if settings.acs_audience:
            self.acs = JwtVerifier(
                settings.acs_jwks_url, ACS_ISSUER, settings.acs_audience, MEDIA_ALGORITHMS
            )
        self.eventgrid: JwtVerifier | None = None
        issuer, audience, jwks = (getattr(settings, f) for f in EVENTGRID_SETTINGS)
        if issuer and audience and jwks:
            self.eventgrid = JwtVerifier(jwks, issuer, audience, EVENTGRID_ALGORITHMS)
        self._answering: dict[str, asyncio.Event] = {}  # by serverCallId

    @classmethod
    def of(cls, app: Any) -> CallbackAuth:
        """The app's instance, made at its first webhook (key caches live as long as it)."""
        auth = getattr(app.state, "callback_auth", None)
        if auth is None:
            auth = app.state.callback_auth = cls(app.state.service.settings)
        return auth

    async def callback_refusal(self, headers: list[tuple[bytes, bytes]]) -> str | None:
        """Why a Call Automation callback is refused, or None (no audience: never)."""
        return await _refusal(self.acs, headers, "ACS callback token")

    async def eventgrid_refusal(self, headers: list[tuple[bytes, bytes]]) -> str | None:
        """Why an Event Grid delivery is refused, or None (Entra auth not set: never)."""
        return await _refusal(self.eventgrid, headers, "Event Grid token")

    @contextlib.contextmanager
    def answering(self, server_call_id: str | None) -> Iterator[None]:
        """Around answering an IncomingCall: ACS may post the call's CallConnected before
        the answer has returned the callConnectionId that makes the call known here."""
        if not server_call_id:
            yield
            return
        done = self._answering.setdefault(server_call_id, asyncio.Event())
        try:
            yield
        finally:
            self._answering.pop(server_call_id, None)
            done.set()

    async def known_control(self, service: Service, data: AcsEventData) -> CallControl | None:
        """The control state of the call a callback is about, or None if this deployment
        neither answered nor registered it, does not stream it, and the registry does not
        know it. Never creates state for an unknown call. Raises RegistryUnavailable."""
        rec = service.recording
        call_id = data.call_connection_id
        if not call_id:  # a recording started elsewhere: known by its recording id, or not
            return rec.by_recording(data.recording_id) if data.recording_id else None
        cc = rec.known(call_id)
        pending = self._answering.get(data.server_call_id or "")
        if cc is None and pending is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(pending.wait(), ANSWER_WAIT_S)
            cc = rec.known(call_id)
        if cc is not None:
            return cc
        if call_id in service.calls:
            return rec.control(call_id)
        try:
            known = await service.cluster.lookup(call_id) or await service.cluster.is_live(call_id)
        except Exception as exc:
            log.warning("the call registry could not be read (%s)", type(exc).__name__)
            raise RegistryUnavailable from None
        return rec.control(call_id) if known else None


async def _refusal(
    verifier: JwtVerifier | None, headers: list[tuple[bytes, bytes]], what: str
) -> str | None:
    if verifier is None:
        return None
    token = bearer_from_headers(headers)
    if token is None:
        return f"{what}: missing bearer token"
    try:
        await verifier.verify(token)
    except AuthError as exc:
        return f"{what}: {exc}"
    return None
