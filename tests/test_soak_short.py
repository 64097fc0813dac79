"""The soak's short version (bench/soak.py runs the long one, 10 minutes at the most calls
the machine sustains): concurrent real-time calls, every frame handled, none dropped,
every call stored whole and ended, memory flat between two rounds."""

from __future__ import annotations

import asyncio
import re

from pipeline.cli.replay import load_call_audio, replay_call

from .conftest import FIXTURES, metric, start_server, wait_for


def _round_done(server, sent: int) -> bool:
    """Every frame sent so far handled, every call ended and everything stored."""
    text = server.get_bytes("/metrics").decode()
    return (
        metric(text, "callstream_frames_received_total") == sent
        and metric(text, "callstream_active_calls") == 0
        and metric(text, "callstream_store_buffered") == 0
    )


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("VmRSS")).split()[1])


async def test_short_soak_every_frame_handled_and_memory_flat(tmp_path) -> None:
    calls = 12
    audio = load_call_audio(FIXTURES / "support_call.wav")
    server = start_server(tmp_path, CALLSTREAM_STT="acs")
    try:
        url = f"{server.ws}/media"
        rounds_rss = []
        sent = 0
        for r in range(3):
            counts = await asyncio.gather(
                *(replay_call(url, audio, f"soak-{r}-{k}", speed=4.0) for k in range(calls))
            )
            sent += sum(counts) + calls  # + one AudioMetadata each
            # The round is over (not a time): then the memory is measured.
            await wait_for(
                lambda n=sent: asyncio.to_thread(_round_done, server, n),
                60,
                "the round to be handled",
            )
            rounds_rss.append(rss_kb(server.proc.pid))
        metrics = (await asyncio.to_thread(server.get_bytes, "/metrics")).decode()
        _, listing = server.get_json("/calls?limit=100")
    finally:
        server.stop()
    assert metric(metrics, "callstream_frames_received_total") == sent
    assert metric(metrics, "callstream_frames_malformed_total") == 0
    dropped = [
        float(v)
        for v in re.findall(r"^callstream_frames_dropped_total\{[^}]*\} (\S+)$", metrics, re.M)
    ]
    assert dropped and sum(dropped) == 0, "no frame dropped, for any reason"
    assert metric(metrics, "callstream_active_calls") == 0
    assert len(listing["calls"]) == 3 * calls and all(
        c["endReason"] == "media-disconnected" for c in listing["calls"]
    )
    # Memory: the third round of the same load costs no more than the second (+10 MB of slack
    # for allocator noise); the first warms caches and is not compared.
    assert rounds_rss[2] - rounds_rss[1] < 10 * 1024, rounds_rss
