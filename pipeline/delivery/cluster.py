"""The call registry and commands between replicas.

Behind a load balancer, ACS's webhook, its media websocket and an agent's click can each
land on a different replica, but a call's session (its payment guard, its recording
driver) lives on the one replica its media reached. The registry says which replica
owns a call and what the control plane knows of it (server call id, recording id and
state, payment window); a command posted on another replica runs on the owner.

`Cluster` is the single-process form (the embedded default: every call is local);
`RedisCluster` (redis_cluster.py) is the form for replicas.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import Mapping
from typing import Any, Protocol

log = logging.getLogger(__name__)

OWNERS = "callstream:owners"  # hash: call id -> replica id, while the call is live
COMMAND_TIMEOUT_S = 3.0
# A hand-over waits this long at most for the old owner's open utterances (per step), and
# the asking replica this long for the whole answer.
HANDOVER_WAIT_S = 4.0
HANDOVER_TIMEOUT_S = 15
REGISTRY_TTL_S = 24 * 3600
HEARTBEAT_S = 5.0
HEARTBEAT_TTL_S = 15


class _LiveCall(Protocol):
    ended: bool


class _KnownValues(Protocol):
    def values(self, call_id: str) -> list[tuple[str, str]]: ...


class ClusterHost(Protocol):
    """What the registry needs of the process it serves: its live calls, the count of
    known values a call holds here, and a way to carry out a command on one of its calls
    (`Service.run_command`; None: the call is not live here)."""

    calls: Mapping[str, _LiveCall]
    known: _KnownValues

    async def run_command(
        self, call_id: str, op: str, body: dict[str, Any]
    ) -> dict[str, Any] | None: ...


class CallRegistry(Protocol):
    """Which replica owns each live call, what the control plane knows of it, and
    commands carried to the owner (one process: `Cluster`; replicas: `RedisCluster`)."""

    replica_id: str
    commands_sent: int
    commands_run: int
    liveness_settle_s: float

    async def start(self) -> None: ...
    async def aclose(self) -> None: ...
    def claim(self, call_id: str) -> None: ...
    def release(self, call_id: str) -> None: ...
    def note(self, call_id: str, **fields: str | None) -> None: ...
    async def lookup(self, call_id: str) -> dict[str, str]: ...
    async def refresh(self, call_id: str) -> None: ...
    def owns(self, call_id: str) -> bool: ...
    async def is_live(self, call_id: str) -> bool: ...
    async def live_calls(self) -> list[str]: ...
    async def send(
        self, call_id: str, op: str, body: dict[str, Any], timeout: float = COMMAND_TIMEOUT_S
    ) -> dict[str, Any] | None: ...
    async def take_over(self, call_id: str) -> dict[str, Any] | None: ...
    async def settled(self) -> None: ...
    async def tell(self, replica_id: str, call_id: str, op: str, body: dict[str, Any]) -> None: ...
    async def broadcast(self, call_id: str, op: str, body: dict[str, Any]) -> None: ...
    async def shared_secret(self, candidate: str) -> str: ...
    async def lock_orphan(self, call_id: str) -> bool: ...


def registry_key(call_id: str) -> str:
    return f"callstream:reg:{call_id}"


def replica_key(replica_id: str) -> str:
    return f"callstream:replica:{replica_id}"


def command_channel(replica_id: str) -> str:
    return f"callstream:cmd:{replica_id}"


BROADCAST = command_channel("all")


class Cluster:
    """One process: the registry is the process's own memory, every call is local."""

    def __init__(self, host: ClusterHost) -> None:
        self.host = host
        self.replica_id = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self.commands_sent = 0
        self.commands_run = 0
        # How long a call must look not live before a stream gives up on it.
        self.liveness_settle_s = 0.0

    async def start(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    def claim(self, call_id: str) -> None:
        """This replica now streams the call."""

    def release(self, call_id: str) -> None:
        """The call ended here."""

    def note(self, call_id: str, **fields: str | None) -> None:
        """Record what the control plane learnt of a call (recording id, state, ...)."""

    async def lookup(self, call_id: str) -> dict[str, str]:
        return {}

    async def refresh(self, call_id: str) -> None:
        """Nothing to take from other replicas."""

    def owns(self, call_id: str) -> bool:
        session = self.host.calls.get(call_id)
        return session is not None and not session.ended

    async def is_live(self, call_id: str) -> bool:
        return self.owns(call_id)

    async def live_calls(self) -> list[str]:
        return list(self.host.calls)

    async def send(
        self, call_id: str, op: str, body: dict[str, Any], timeout: float = COMMAND_TIMEOUT_S
    ) -> dict[str, Any] | None:
        """Run ``op`` on the replica that owns the call. None: no replica has it live."""
        return await self.host.run_command(call_id, op, body)

    async def take_over(self, call_id: str) -> dict[str, Any] | None:
        """Media for a call this replica does not have: if another live replica streams it
        (ACS reconnected here), that one hands it over. None: nobody else has it."""
        return None

    async def settled(self) -> None:
        """Every registry write queued so far is applied."""

    async def tell(self, replica_id: str, call_id: str, op: str, body: dict[str, Any]) -> None:
        """Run ``op`` on one replica, without an answer."""

    async def broadcast(self, call_id: str, op: str, body: dict[str, Any]) -> None:
        await self.host.run_command(call_id, op, body)

    async def shared_secret(self, candidate: str) -> str:
        """The callback secret every replica uses (here: this process's)."""
        return candidate

    async def lock_orphan(self, call_id: str) -> bool:
        """May this replica close a call left open by a dead process? (one process: yes)"""
        return True
