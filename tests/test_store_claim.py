"""A second service on a SQLite store that a running one serves (memory bus) is refused at
start: it would close the first one's live calls as left behind by a crash."""

from __future__ import annotations

import json
import os

from websockets.asyncio.client import connect

from .conftest import collect_call_events, free_port, run_cli
from .test_e2e_media import _transcription


def _env(**extra: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("CALLSTREAM_")}, **extra}


async def test_a_second_service_on_the_same_store_is_refused_and_the_first_goes_on(
    acs_server, tmp_path
) -> None:
    call_id = "claimed-store-call"
    async with connect(f"{acs_server.ws}/media?callId={call_id}") as media:
        await media.send(
            json.dumps(
                {"kind": "TranscriptionMetadata", "transcriptionMetadata": {"locale": "en-us"}}
            )
        )
        await media.send(_transcription("my router keeps dropping", "Final", "4:+15550100", 1000))

        data_dir = str(acs_server.data_dir)
        for argv in (
            ["demo", "--speed", "0", "--data-dir", data_dir],
            ["serve", "--port", str(free_port()), "--data-dir", data_dir],
        ):
            done = run_cli(*argv, cwd=tmp_path, env=_env(CALLSTREAM_STT="acs"), timeout=120)
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            assert done.returncode == 2, done.stdout + done.stderr
            assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
            assert f"in use by another callstream process (pid {acs_server.proc.pid})" in lines[0]

        await media.send(_transcription("thank you", "Final", "8:acs:agent", 3000))
    events = await collect_call_events(acs_server.ws, call_id, since=0, timeout=60)
    types = [e["type"] for e in events]
    assert types.count("transcript.final") == 2 and types[-1] == "call.ended"
    assert events[-1]["reason"] != "server-crashed"
