"""The call registry across replicas: Redis hashes for who owns which call, Redis pub/sub
for commands to the owner, each with a reply list the sender waits on.

Known entity values (secrets) only travel in commands, never into a Redis key. See
`cluster.py` for what the registry is for and its single-process form.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any

from pipeline.delivery.cluster import (
    BROADCAST,
    COMMAND_TIMEOUT_S,
    HANDOVER_TIMEOUT_S,
    HEARTBEAT_S,
    HEARTBEAT_TTL_S,
    OWNERS,
    REGISTRY_TTL_S,
    Cluster,
    ClusterHost,
    command_channel,
    registry_key,
    replica_key,
)
from pipeline.tasks import TaskSet

log = logging.getLogger(__name__)


class RedisCluster(Cluster):
    def __init__(self, host: ClusterHost, url: str) -> None:
        super().__init__(host)
        self.url = url
        self._redis: Any = None
        self._pubsub: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._writes: asyncio.Queue[tuple[str, tuple]] = asyncio.Queue()
        self._closing = False
        self._commands = TaskSet("cluster commands")  # each command received, until it is done
        self.liveness_settle_s = 2 * HEARTBEAT_S + 2

    async def start(self) -> None:
        from pipeline.delivery.redis_bus import (
            redis_client,  # redis is imported only when the cluster is
        )

        self._redis = redis_client(self.url, socket_timeout=5, decode_responses=True)
        await self._redis.ping()
        await self._heartbeat_once()
        self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        await self._pubsub.subscribe(command_channel(self.replica_id), BROADCAST)
        self._tasks = [
            asyncio.create_task(self._listen(), name="cluster-commands"),
            asyncio.create_task(self._write_loop(), name="cluster-registry"),
            asyncio.create_task(self._heartbeat(), name="cluster-heartbeat"),
        ]
        log.info("replica %s joined the cluster", self.replica_id)

    async def aclose(self) -> None:
        self._closing = True
        await self._writes.join()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._commands.aclose(grace_s=COMMAND_TIMEOUT_S)  # their senders wait for a reply
        try:
            await self._redis.delete(replica_key(self.replica_id))
            await self._pubsub.aclose()
        except Exception as exc:
            log.warning("leaving the cluster: %s", type(exc).__name__)
        await self._redis.aclose()

    # ----- registry writes, in order, off the caller's path ----------------------------
    def _write(self, kind: str, *args: Any) -> None:
        self._writes.put_nowait((kind, args))

    def claim(self, call_id: str) -> None:
        self._write("claim", call_id)

    def release(self, call_id: str) -> None:
        self._write("release", call_id)

    def note(self, call_id: str, **fields: str | None) -> None:
        values = {k: v for k, v in fields.items() if v is not None}
        if values:
            self._write("note", call_id, values)

    async def _write_loop(self) -> None:
        while True:
            kind, args = await self._writes.get()
            try:
                await self._apply(kind, *args)
            except Exception as exc:  # Redis away: the registry misses this, the call goes on
                log.error("call registry: %s failed (%s)", kind, type(exc).__name__)
            finally:
                self._writes.task_done()

    async def _apply(self, kind: str, call_id: str, values: dict[str, str] | None = None) -> None:
        key = registry_key(call_id)
        pipe = self._redis.pipeline(transaction=False)
        if kind == "claim":
            pipe.hset(OWNERS, call_id, self.replica_id)
            pipe.hset(key, mapping={"owner": self.replica_id})
        elif kind == "release":
            # Only if still ours: a reconnect may have moved the call to another replica.
            if await self._redis.hget(OWNERS, call_id) == self.replica_id:
                pipe.hdel(OWNERS, call_id)
            pipe.hset(key, mapping={"owner": "", "payment": "closed"})
        else:
            pipe.hset(key, mapping=values or {})
        pipe.expire(key, REGISTRY_TTL_S)
        await pipe.execute()
        if kind == "claim":
            await self.refresh(call_id)

    async def refresh(self, call_id: str) -> None:
        """Take what another replica learnt of the call (its recording) into this one's."""
        reg = await self.lookup(call_id)
        if reg.get("recordingId") or reg.get("serverCallId"):
            await self.host.run_command(call_id, "recording", reg)

    async def lookup(self, call_id: str) -> dict[str, str]:
        return await self._redis.hgetall(registry_key(call_id))

    async def _owner(self, call_id: str) -> str | None:
        """The replica streaming the call, if it is still alive."""
        owner = await self._redis.hget(OWNERS, call_id)
        if not owner:
            return None
        if owner != self.replica_id and not await self._redis.exists(replica_key(owner)):
            return None  # that replica died without releasing its calls
        return owner

    async def is_live(self, call_id: str) -> bool:
        if self.owns(call_id):
            return True
        try:
            return await self._owner(call_id) is not None
        except Exception:
            return False

    async def live_calls(self) -> list[str]:
        owners = await self._redis.hgetall(OWNERS)
        return sorted(set(owners) | set(self.host.calls))

    # ----- commands ----------------------------------------------------------------------
    async def send(
        self, call_id: str, op: str, body: dict[str, Any], timeout: float = COMMAND_TIMEOUT_S
    ) -> dict[str, Any] | None:
        if self.owns(call_id):
            return await self.host.run_command(call_id, op, body)
        owner = await self._owner(call_id)
        if owner is None or owner == self.replica_id:
            return None
        reply_key = f"callstream:reply:{uuid.uuid4().hex}"
        message = json.dumps({"op": op, "callId": call_id, "body": body, "reply": reply_key})
        self.commands_sent += 1
        if not await self._redis.publish(command_channel(owner), message):
            return None  # nobody listening: the owner is gone
        answer = await self._redis.blpop([reply_key], timeout=timeout)
        if answer is None:
            log.warning("call %s: replica %s did not answer %s in time", call_id, owner, op)
            return None
        doc = json.loads(answer[1])
        return doc.get("result")

    async def take_over(self, call_id: str) -> dict[str, Any] | None:
        owner = await self._owner(call_id)
        if owner is None or owner == self.replica_id:
            return None
        state = await self.send(
            call_id, "handover", {"replica": self.replica_id}, timeout=HANDOVER_TIMEOUT_S
        )
        if state is None:
            log.warning(
                "call %s: replica %s did not hand the call over; going on from the store",
                call_id,
                owner,
            )
            return None
        # The call's known entity values come as a command of their own, sent just before
        # the answer: wait (briefly) until they are here, so redaction never runs without them.
        want = int(state.get("knownValues", 0))
        for _ in range(100):
            if len(self.host.known.values(call_id)) >= want:
                break
            await asyncio.sleep(0.02)
        else:
            log.warning(
                "call %s: its known entity values did not arrive with the hand-over", call_id
            )
        return state

    async def tell(self, replica_id: str, call_id: str, op: str, body: dict[str, Any]) -> None:
        self.commands_sent += 1
        await self._redis.publish(
            command_channel(replica_id), json.dumps({"op": op, "callId": call_id, "body": body})
        )

    async def settled(self) -> None:
        await self._writes.join()

    async def broadcast(self, call_id: str, op: str, body: dict[str, Any]) -> None:
        self.commands_sent += 1
        await self._redis.publish(
            BROADCAST, json.dumps({"op": op, "callId": call_id, "body": body})
        )

    async def _listen(self) -> None:
        async for message in self._pubsub.listen():
            if message.get("type") != "message":
                continue
            try:
                doc = json.loads(message["data"])
                call_id, op = str(doc["callId"]), str(doc["op"])
            except (ValueError, KeyError, TypeError):
                log.warning("cluster: a malformed command was ignored")
                continue
            self._commands.spawn(
                self._run(call_id, op, doc.get("body") or {}, doc.get("reply")), f"cluster-{op}"
            )

    async def _run(self, call_id: str, op: str, body: dict[str, Any], reply: str | None) -> None:
        try:
            result = await self.host.run_command(call_id, op, body)
            self.commands_run += 1
        except Exception as exc:
            log.error("call %s: command %s failed (%s)", call_id, op, type(exc).__name__)
            result = None
        if reply:
            pipe = self._redis.pipeline(transaction=False)
            pipe.rpush(reply, json.dumps({"result": result}))
            pipe.expire(reply, 30)
            await pipe.execute()

    async def _heartbeat_once(self) -> None:
        """Say this replica is alive, and which calls it streams: a Redis that restarted
        without its data learns them again within one period."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.set(replica_key(self.replica_id), "1", ex=HEARTBEAT_TTL_S)
        live = [cid for cid, s in self.host.calls.items() if not s.ended]
        if live:
            pipe.hset(OWNERS, mapping=dict.fromkeys(live, self.replica_id))
        await pipe.execute()

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            try:
                await self._heartbeat_once()
            except Exception as exc:
                log.warning("cluster heartbeat failed (%s)", type(exc).__name__)

    async def lock_orphan(self, call_id: str) -> bool:
        return bool(
            await self._redis.set(f"callstream:orphan:{call_id}", self.replica_id, nx=True, ex=300)
        )

    async def shared_secret(self, candidate: str) -> str:
        """The first replica's generated callback secret wins; every replica then uses it,
        so a callback URL handed to ACS by one replica is accepted by all."""
        key = "callstream:callback-secret"
        await self._redis.set(key, candidate, nx=True)
        return await self._redis.get(key) or candidate
