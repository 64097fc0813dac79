"""Recording control through ACS Call Automation: pause when a payment starts, resume after.

PCI fails closed (README, Architecture: invariant 3): a pause is sent the moment a window
opens and retried until ACS confirms it or the window ends; every attempt is an audit
record, and every failure before ACS confirms a ``recording.error`` event. The SDK is
synchronous, so calls run in a small thread pool, never on the event loop. Its own retry
policy is switched off (by default it would resend a 5xx four times over about five
seconds, silently): here a failed request is retried 20 ms later, then after 0.1, 0.25,
0.5, 1, 2 and 4 s while the window is open, and a request ACS has not answered within
250 ms gets a second one beside it (`pipeline.pci.recording_attempts`), each bounded by
``recording_attempt_timeout_s``. A 202 only says ACS accepted the request: a pause
counts as done when ACS reports the recording inactive after it was asked, by a
``RecordingStateChanged`` callback or ``get_recording_properties``; only then is
``recording.paused`` published. A request ACS accepted but has not confirmed within the
confirmation wait is ``recording.error`` ``unconfirmed``, and is asked again
(`pipeline.pci.recording_confirm`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from pipeline.pci.recording_attempts import Attempts, retry_delay
from pipeline.pci.recording_confirm import (
    RecordedCall,
    StateReports,
    confirm,
    confirmed,
    unconfirmed,
)

if TYPE_CHECKING:
    from models.settings import Settings
    from pipeline.pci.payment_guard import Window

log = logging.getLogger(__name__)


class AcsNotConfigured(RuntimeError):
    pass


def parse_connection_string(conn: str) -> tuple[str, str]:
    """(endpoint, access key) from "endpoint=...;accesskey=...". The SDK's own
    ``from_connection_string`` forces https, which an emulator on http:// cannot serve."""
    parts = dict(p.split("=", 1) for p in conn.split(";") if "=" in p)
    lower = {k.strip().lower(): v.strip() for k, v in parts.items()}
    if "endpoint" not in lower or "accesskey" not in lower:
        raise ValueError("the ACS connection string needs endpoint=...;accesskey=...")
    return lower["endpoint"], lower["accesskey"]


def websocket_url(public_url: str, path: str) -> str:
    """The wss:// (or ws://) URL of ``path`` under the service's public base URL."""
    parts = urlsplit(public_url)
    scheme = {"https": "wss", "http": "ws"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + path, "", ""))


def http_url(public_url: str, path: str) -> str:
    parts = urlsplit(public_url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/") + path, "", ""))


def describe_error(exc: BaseException) -> str:
    """What went wrong, for events and the audit: the kind and HTTP status, no payloads."""
    status = getattr(exc, "status_code", None)
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return "timeout"
    name = type(exc).__name__
    if "Timeout" in name or "timed out" in str(exc).lower():
        return f"timeout ({name})"
    return f"{name} (HTTP {status})" if status else name


@dataclass
class CallControl:
    """What callstream knows of one call's control plane (keyed by callConnectionId)."""

    call_id: str
    server_call_id: str | None = None
    recording_id: str | None = None
    recording_state: str | None = None  # active | inactive
    reports: StateReports = field(default_factory=StateReports)  # what ACS said, and when


class RecordingController:
    def __init__(
        self, settings: Settings, observe_pause_latency: Callable[[float], None] | None = None
    ) -> None:
        self.settings = settings
        # Seconds from the moment a window opened to its first pause request on the wire.
        self._observe_pause_latency = observe_pause_latency or (lambda _s: None)
        self.configured = settings.acs_configured
        self.timeout_s = settings.recording_attempt_timeout_s
        self._client: Any = None
        # Pause and resume requests get threads of their own, so that a state poll or an
        # answer in flight never delays the request that keeps a card number off the
        # recording.
        self._urgent = ThreadPoolExecutor(max_workers=8, thread_name_prefix="acs-pause")
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="acs")
        self.calls: dict[str, CallControl] = {}
        # Set by the service with several replicas: fills a call's CallControl from the registry.
        self.refresh: Callable[[str], Awaitable[None]] | None = None
        self.pause_failures = 0

    # ----- the SDK, off the loop ---------------------------------------------------------
    def client(self) -> Any:
        if self._client is None:
            if not self.configured:
                raise AcsNotConfigured("ACS is not configured (CALLSTREAM_ACS_ENDPOINT + _KEY)")
            from azure.communication.callautomation import CallAutomationClient
            from azure.core.credentials import AzureKeyCredential

            s = self.settings
            if s.acs_connection_string:
                endpoint, key = parse_connection_string(s.acs_connection_string)
            else:
                endpoint, key = s.acs_endpoint or "", s.acs_key or ""
            # The constructor keeps an http:// endpoint as given; retries are ours.
            # A trailing slash would be signed as part of the host (the SDK answers 401).
            self._client = CallAutomationClient(
                endpoint.rstrip("/"), AzureKeyCredential(key), retry_total=0
            )
        return self._client

    async def _call(
        self, method: str, *args: Any, on_sent: Callable[[], None] | None = None, **kwargs: Any
    ) -> Any:
        t = self.timeout_s
        if on_sent is not None:
            kwargs["raw_request_hook"] = lambda _request: on_sent()
        fn = functools.partial(
            getattr(self.client(), method), *args, connection_timeout=t, read_timeout=t, **kwargs
        )
        pool = self._urgent if method in ("pause_recording", "resume_recording") else self._pool
        loop = asyncio.get_running_loop()
        return await asyncio.wait_for(loop.run_in_executor(pool, fn), timeout=2 * t + 1)

    def control(self, call_id: str) -> CallControl:
        cc = self.calls.get(call_id)
        if cc is None:
            cc = self.calls[call_id] = CallControl(call_id)
        return cc

    def export(self, call_id: str) -> dict[str, str | None]:
        """What another replica needs to drive this call's recording (a hand-over)."""
        cc = self.calls.get(call_id)
        if cc is None:
            return {}
        return {
            "recordingId": cc.recording_id,
            "serverCallId": cc.server_call_id,
            "recordingState": cc.recording_state,
        }

    def restore(self, call_id: str, state: dict[str, str | None]) -> None:
        """Take over a call's recording from the replica that handed the call over."""
        if not (state.get("recordingId") or state.get("serverCallId")):
            return
        cc = self.control(call_id)
        cc.recording_id = cc.recording_id or state.get("recordingId")
        cc.server_call_id = cc.server_call_id or state.get("serverCallId")
        if state.get("recordingState"):  # known, not a report: it confirms no request here
            cc.recording_state = str(state["recordingState"]).lower()

    def by_recording(self, recording_id: str) -> CallControl | None:
        return next((c for c in self.calls.values() if c.recording_id == recording_id), None)

    def known(self, call_id: str) -> CallControl | None:
        """The call's state if it was answered or registered here; unlike `control`, never
        creates one (a callback about another call must leave nothing behind)."""
        return self.calls.get(call_id)

    # ----- answering and recording -------------------------------------------------------
    async def answer(
        self, incoming_call_context: str, callback_url: str, transport_url: str
    ) -> Any:
        from azure.communication.callautomation import (
            AudioFormat,
            MediaStreamingAudioChannelType,
            MediaStreamingContentType,
            MediaStreamingOptions,
            StreamingTransportType,
        )

        media = MediaStreamingOptions(
            transport_url=transport_url,
            transport_type=StreamingTransportType.WEBSOCKET,
            content_type=MediaStreamingContentType.AUDIO,
            audio_channel_type=MediaStreamingAudioChannelType.UNMIXED,
            start_media_streaming=True,
            audio_format=AudioFormat.PCM16_K_MONO,
            enable_dtmf_tones=True,
        )
        return await self._call(
            "answer_call", incoming_call_context, callback_url, media_streaming=media
        )

    async def start_recording(self, cc: CallControl, state_callback_url: str) -> None:
        props = await self._call(
            "start_recording",
            server_call_id=cc.server_call_id,
            recording_state_callback_url=state_callback_url,
        )
        cc.recording_id = props.recording_id
        cc.recording_state = str(props.recording_state).lower() if props.recording_state else None

    def on_state(self, cc: CallControl, state: str, source: str = "callback") -> None:
        """ACS reported the recording's state (its callback, or one forwarded by a replica)."""
        cc.recording_state = state.lower()
        cc.reports.add(state, source)

    async def _poll_state(self, cc: CallControl) -> None:
        try:
            props = await self._call("get_recording_properties", cc.recording_id)
        except Exception as exc:
            log.warning(
                "call %s: recording state poll failed (%s)",
                cc.call_id,
                describe_error(exc),
                extra={"callId": cc.call_id},
            )
            return
        self.on_state(cc, str(props.recording_state), "poll")

    # ----- payment windows ---------------------------------------------------------------
    def _wake(self, call_id: str) -> None:
        """A window opened or closed: a driver waiting for ACS re-checks it is still wanted."""
        if (cc := self.calls.get(call_id)) is not None:
            cc.reports.wake()

    def window_opened(self, session: RecordedCall, window: Window, t0: float) -> None:
        self._wake(session.call_id)
        session.track(
            asyncio.get_running_loop().create_task(self._drive(session, window, t0, "pause"))
        )

    def window_closed(self, session: RecordedCall, window: Window, t0: float) -> None:
        self._wake(session.call_id)
        session.track(
            asyncio.get_running_loop().create_task(self._drive(session, window, t0, "resume"))
        )

    async def _drive(self, session: RecordedCall, window: Window, t0: float, action: str) -> None:
        """Send pause (or resume) until ACS confirms, or until the window changes state."""
        try:
            await self._drive_once(session, window, t0, action)
        except asyncio.CancelledError:
            session.audit(
                "recording.abandoned",
                {"action": action, "window": window.number, "reason": "the call ended"},
            )
            raise

    async def _drive_once(
        self, session: RecordedCall, window: Window, t0: float, action: str
    ) -> None:
        cc = self.control(session.call_id)
        pausing = action == "pause"
        if self.configured and cc.recording_id is None and self.refresh is not None:
            # Another replica may have started the recording (its CallConnected landed there).
            try:
                await self.refresh(session.call_id)
            except Exception as exc:
                log.warning(
                    "call %s: the call registry could not be read (%s)",
                    session.call_id,
                    type(exc).__name__,
                )
        if not self.configured or cc.recording_id is None:
            reason = (
                "ACS is not configured"
                if not self.configured
                else "no recording is known for this call"
            )
            session.audit(
                "recording.skipped", {"action": action, "window": window.number, "reason": reason}
            )
            return
        rid = cc.recording_id
        want = "inactive" if pausing else "active"
        method = "pause_recording" if pausing else "resume_recording"

        def still_wanted() -> bool:
            return (
                window.open if pausing else (window.open is False and session.guard.window is None)
            )

        def count_failure() -> None:
            if pausing:
                self.pause_failures += 1

        attempts = Attempts(
            session, window, action, rid, t0,
            send=lambda on_sent: self._call(method, rid, on_sent=on_sent),
            describe=describe_error, on_failure=count_failure,
            # The window's first pause request on the wire is its intent-to-pause latency.
            on_first_sent=self._observe_pause_latency if pausing else None,
        )  # fmt: skip
        failed_rounds = 0
        try:
            while still_wanted():
                accepted, got = await attempts.round(cc.reports, want, still_wanted)
                if got is None and accepted is not None:
                    # Accepted, which is not done: on record already; ACS's word is awaited.
                    poll = functools.partial(self._poll_state, cc)
                    got = await confirm(cc.reports, want, t0, still_wanted, poll)
                    if got is None and still_wanted():
                        count_failure()
                        unconfirmed(
                            session, window, action, rid, accepted.number, t0, cc.recording_state
                        )
                if got is None and still_wanted():
                    failed_rounds += 1
                    # ACS may have carried out a request whose answer was lost: its word counts.
                    got = await cc.reports.wait(want, t0, retry_delay(failed_rounds), still_wanted)
                if got is not None:
                    attempts.settled = True
                    number = accepted.number if accepted is not None else attempts.count
                    confirmed(session, window, action, rid, number, t0, got)
                    return
        finally:
            attempts.settled = True
        session.audit(
            "recording.abandoned",
            {"action": action, "window": window.number, "recordingId": rid, "attempts": attempts.count,
             "reason": "the window closed before ACS confirmed" if pausing else "a new window opened"},
        )  # fmt: skip

    def close(self) -> None:
        self._urgent.shutdown(wait=False, cancel_futures=True)
        self._pool.shutdown(wait=False, cancel_futures=True)
