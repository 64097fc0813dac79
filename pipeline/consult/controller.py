"""Asking a Microsoft Teams user (an expert) into a live call through ACS Call Automation.

``POST /calls/{callId}/consult`` may land on any replica; the request runs where the
call's session is (a cluster command, like the agent's manual pause), because that is
where the call's events get their ``seq``. There:

1. a fresh operation context is made (``callstream-consult-<random>``), ``consult.requested``
   is published and audited with who asked, and the answer (202) goes back at once;
2. ``CallConnectionClient.add_participant`` with a ``MicrosoftTeamsUserIdentifier`` is
   sent from a thread pool of its own (the SDK is synchronous; nothing here waits on the
   event loop, and the PCI pause requests keep their own threads), bounded by
   `ACS_TIMEOUT_S`. ACS refusing it (HTTP 4xx/5xx) is ``consult.failed`` at once;
3. ACS's ``AddParticipantSucceeded`` / ``AddParticipantFailed`` callback, matched by its
   ``operationContext`` to a request made here, is ``consult.added`` / ``consult.failed``
   (from whichever replica the callback reached, carried to the call's). A callback with a
   context this process never issued, or already settled, changes nothing.

A request ACS did not answer in time (or could not be reached for) is ``consult.failed``
with ``timeout``; ACS may still have done it, so its callback is still honoured and a
late success becomes ``consult.added``. A second request for the same Teams user while
one is pending is not sent again: it is answered with the pending request's operation
context (and audited as ``consult.repeated``). Every step is an audit record with
``by``/``byRole`` (who asked), ``teamsUserId`` and ``displayName``; errors are short
descriptions (the SDK error's kind and HTTP status, or ACS's ``code/subCode: message``),
never a payload. What a consult leaves in memory goes with its call.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from models.events import ConsultAdded, ConsultFailed, ConsultRequested
from pipeline.consult.experts import Expert, parse_experts
from pipeline.pci.recording import describe_error

if TYPE_CHECKING:
    from models.settings import Settings
    from pipeline.api.wire import AcsEventData, AcsIdentifier, AcsResultInformation
    from pipeline.delivery.cluster import CallRegistry
    from pipeline.ingest.session import CallSession
    from pipeline.pci.recording import RecordingController

log = logging.getLogger(__name__)

OP_REQUEST = "consult"  # cluster commands, run where the call's session is
OP_RESULT = "consult-result"
OPS = (OP_REQUEST, OP_RESULT)
CONTEXT_PREFIX = "callstream-consult-"
ACS_TIMEOUT_S = 3.0  # connect and read, each, for the add-participant request
MAX_MESSAGE = 160  # of ACS's resultInformation.message, in an event
_ERROR_CODE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@dataclass
class Consult:
    """One request to add a Teams user, until ACS settles it (or its call ends)."""

    context: str
    session: CallSession
    teams_user_id: str
    display_name: str
    by: dict[str, str]  # {"by", "byRole"}: who asked
    state: str = "pending"  # pending | failed (ACS did not answer: a callback may still come)

    def record(self, **more: Any) -> dict[str, Any]:
        return {
            "operationContext": self.context,
            "teamsUserId": self.teams_user_id,
            "displayName": self.display_name,
            **self.by,
            **more,
        }


def describe_sdk_error(exc: BaseException) -> str:
    """The SDK's error, short: its kind and HTTP status, and ACS's error code if it is one
    (a word, never the message, which may quote the request)."""
    text = describe_error(exc)
    code = getattr(getattr(exc, "error", None), "code", None)
    if isinstance(code, str) and _ERROR_CODE.fullmatch(code) and code not in text:
        return f"{text}: {code}"
    return text


def describe_result(info: AcsResultInformation | None) -> str:
    """ACS's ``resultInformation`` as ``ACS code/subCode: message`` (message shortened to
    one line of at most `MAX_MESSAGE` characters)."""
    if info is None:
        return "ACS reported a failure without resultInformation"
    text = f"ACS {info.code if info.code is not None else '?'}/{info.sub_code or 0}"
    message = " ".join("".join(c if c.isprintable() else " " for c in info.message or "").split())
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 1] + "…"
    return f"{text}: {message}" if message else text


def teams_user_of(participant: AcsIdentifier | None) -> str | None:
    """The Entra object id a callback's ``participant`` names, lower case (None if none)."""
    if participant is None:
        return None
    if participant.microsoft_teams_user is not None and participant.microsoft_teams_user.user_id:
        return participant.microsoft_teams_user.user_id.lower()
    raw = participant.raw_id or ""
    if raw.startswith("8:") and raw.count(":") >= 2:  # 8:orgid:<oid>, 8:gcch:<oid>, ...
        return raw.rsplit(":", 1)[1].lower()
    return None


class ConsultController:
    """The consults of this process's calls. One per service (`Service.consult`)."""

    def __init__(
        self, settings: Settings, recording: RecordingController, cluster: CallRegistry
    ) -> None:
        self.experts: tuple[Expert, ...] = parse_experts(settings.experts)
        self._expert_ids = frozenset(e.teams_user_id for e in self.experts)
        self.recording = recording  # builds the Call Automation client from the settings
        self.cluster = cluster
        self.timeout_s = ACS_TIMEOUT_S
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="acs-consult")
        self._pending: dict[str, Consult] = {}  # by operation context

    @property
    def configured(self) -> bool:
        """ACS Call Automation is configured (else nobody can be added to a call)."""
        return self.recording.configured

    def is_expert(self, teams_user_id: str) -> bool:
        return teams_user_id.lower() in self._expert_ids

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # ----- on the replica that took the request or the callback -------------------------
    async def ask(
        self, call_id: str, teams_user_id: str, display_name: str, by: dict[str, str]
    ) -> dict[str, Any] | None:
        """Ask for the Teams user on the replica that has the call: ``{"operationContext"}``,
        or None when no replica has it live."""
        body = {"teamsUserId": teams_user_id.lower(), "displayName": display_name, **by}
        return await self.cluster.send(call_id, OP_REQUEST, body)

    async def report(self, call_id: str, data: AcsEventData, succeeded: bool) -> None:
        """ACS's AddParticipantSucceeded / AddParticipantFailed for ``call_id``, carried to
        the replica that has the call (nothing happens if none has it live)."""
        body = {
            "operationContext": data.operation_context,
            "succeeded": succeeded,
            "error": None if succeeded else describe_result(data.result_information),
            "teamsUserId": teams_user_of(data.participant),
        }
        await self.cluster.send(call_id, OP_RESULT, body)

    # ----- where the call's session is (Service.run_command) ------------------------------
    def command(self, session: CallSession, op: str, body: dict[str, Any]) -> dict[str, Any] | None:
        if op == OP_REQUEST:
            return self._request(session, body)
        if op == OP_RESULT:
            return self._result(session, body)
        raise ValueError(f"unknown consult command {op!r}")

    def forget(self, session: CallSession) -> list[dict[str, Any]]:
        """The call has ended, or moved to another replica: its consults leave this one.
        Returns those still waiting for ACS, for the hand-over state (`restore` there)."""
        gone = [k for k in self._pending.values() if k.session is session]
        for consult in gone:
            del self._pending[consult.context]
        return [{"context": k.context, "state": k.state, **k.record()} for k in gone]

    def restore(self, session: CallSession, handed: list[dict[str, Any]]) -> None:
        """Consults another replica's session was waiting on: ACS's callback, wherever it
        lands, is carried here now, and settles them on this session."""
        for item in handed:
            context = str(item.get("context", ""))
            if not context.startswith(CONTEXT_PREFIX):
                continue
            self._pending[context] = Consult(
                context=context,
                session=session,
                teams_user_id=str(item.get("teamsUserId", "")),
                display_name=str(item.get("displayName", "")),
                by={"by": str(item.get("by", "")), "byRole": str(item.get("byRole", ""))},
                state=str(item.get("state", "pending")),
            )

    def expert_name(self, teams_user_id: str) -> str | None:
        return next(
            (e.name for e in self.experts if e.teams_user_id == teams_user_id.lower()), None
        )

    def _request(self, session: CallSession, body: dict[str, Any]) -> dict[str, Any] | None:
        if not session.started or session.ending:  # no audio yet, or ending: not live
            return None
        teams_user_id = str(body["teamsUserId"])
        by = {"by": str(body.get("by", "")), "byRole": str(body.get("byRole", ""))}
        if session.payment_open:
            # PCI: a card is being read out; nobody new joins to hear it (nor is their
            # audio withheld from a remote engine: they would be staff).
            session.audit(
                "consult.refused",
                {"teamsUserId": teams_user_id, "reason": "payment window open", **by},
            )
            return {"refused": "a payment is in progress: ask again once it has ended"}
        for earlier in self._pending.values():
            if (
                earlier.session is session
                and earlier.teams_user_id == teams_user_id
                and earlier.state == "pending"
            ):
                session.audit("consult.repeated", earlier.record(**{"askedBy": by["by"]}))
                return {"operationContext": earlier.context, "repeated": True}
        consult = Consult(
            context=CONTEXT_PREFIX + secrets.token_hex(12),
            session=session,
            teams_user_id=teams_user_id,
            display_name=str(body["displayName"]),
            by=by,
        )
        self._pending[consult.context] = consult
        session.emit(self._event(ConsultRequested, consult))
        session.audit("consult.requested", consult.record())
        session.track_new(self._send(consult))
        log.info(
            "call %s: consult %s requested by a %s",
            session.call_id,
            consult.context,
            by["byRole"],
            extra={"callId": session.call_id},
        )
        return {"operationContext": consult.context, "repeated": False}

    async def _send(self, consult: Consult) -> None:
        session = consult.session
        try:
            client = self.recording.client()
            t = self.timeout_s
            fn = functools.partial(
                _add_participant, client, session.call_id, consult.teams_user_id, consult.context, t
            )
            loop = asyncio.get_running_loop()
            result = await asyncio.wait_for(loop.run_in_executor(self._pool, fn), 2 * t + 1)
        except asyncio.CancelledError:
            # The call ended first; or it is being handed to another replica (`ending` is
            # set first then): the request is out, and its callback settles it there.
            if not session.ending and self._pending.pop(consult.context, None) is not None:
                session.audit("consult.failed", consult.record(error="the call ended first"))
            raise
        except Exception as exc:
            error = describe_sdk_error(exc)
            # No HTTP status: ACS never answered (timeout, unreachable). It may still add the
            # user, so its callback is awaited all the same; with one, ACS refused it.
            unanswered = getattr(exc, "status_code", None) is None
            log.warning(
                "call %s: consult %s failed (%s)",
                session.call_id,
                consult.context,
                error,
                extra={"callId": session.call_id},
            )
            if consult.context not in self._pending:
                return  # its callback came first and settled it
            if unanswered:
                consult.state = "failed"
            else:
                del self._pending[consult.context]
            self._settle(consult, ConsultFailed, error)
            return
        invitation = getattr(result, "invitation_id", None)
        session.audit("consult.sent", consult.record(invitationId=invitation))

    def _result(self, session: CallSession, body: dict[str, Any]) -> dict[str, Any]:
        context = body.get("operationContext")
        consult = self._pending.get(context) if isinstance(context, str) else None
        if consult is None or consult.session is not session:
            return {"matched": False}  # never issued here, or already settled
        named = body.get("teamsUserId")
        if named and named != consult.teams_user_id:  # not whom this context asked for
            log.warning(
                "call %s: consult %s: the callback names another participant; ignored",
                session.call_id,
                context,
                extra={"callId": session.call_id},
            )
            return {"matched": False}
        del self._pending[consult.context]
        if body.get("succeeded"):
            self._settle(consult, ConsultAdded, None)
        else:
            self._settle(consult, ConsultFailed, str(body.get("error") or "failed"))
        return {"matched": True}

    def _settle(self, consult: Consult, kind: type, error: str | None) -> None:
        session = consult.session
        name = "consult.added" if kind is ConsultAdded else "consult.failed"
        session.audit(name, consult.record(**({"error": error} if error else {})))
        if not session.ended:  # nothing follows a call's call.ended
            session.emit(self._event(kind, consult, error))

    @staticmethod
    def _event(kind: type, consult: Consult, error: str | None = None) -> Any:
        return kind(
            callId=consult.session.call_id,
            teamsUserId=consult.teams_user_id,
            displayName=consult.display_name,
            error=error,
        )


def _add_participant(
    client: Any, call_id: str, teams_user_id: str, context: str, timeout_s: float
) -> Any:
    """The SDK call (in the pool's thread): POST .../participants:add, 202 expected."""
    from azure.communication.callautomation import MicrosoftTeamsUserIdentifier

    return client.get_call_connection(call_id).add_participant(
        MicrosoftTeamsUserIdentifier(teams_user_id),
        operation_context=context,
        connection_timeout=timeout_s,
        read_timeout=timeout_s,
    )
