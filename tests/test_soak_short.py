"""The soak's short version (bench/soak.py runs the long one, 10 minutes at the most calls
the machine sustains): concurrent real-time calls, every frame handled, none dropped,
every call stored whole and ended, memory flat between two rounds."""

from __future__ import annotations

import asyncio
import re

from pipeline.replay import load_call_audio, replay_call

from .conftest import FIXTURES, start_server


def metric(text: str, name: str) -> float:
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


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
            await asyncio.sleep(1.0)
            rounds_rss.append(rss_kb(server.proc.pid))
        metrics = (await asyncio.to_thread(server.get_bytes, "/metrics")).decode()
        _, listing = server.get_json("/calls?limit=100")
    finally:
        server.stop()
    assert metric(metrics, "callstream_frames_received_total") == sent
    assert metric(metrics, "callstream_frames_malformed_total") == 0
    dropped = [float(v) for v in re.findall(r"^callstream_frames_dropped_total\{[^}]*\} (\S+)$", metrics, re.M)]
    assert dropped and sum(dropped) == 0, "no frame dropped, for any reason"
    assert metric(metrics, "callstream_active_calls") == 0
    assert len(listing["calls"]) == 3 * calls and all(c["endReason"] == "media-disconnected" for c in listing["calls"])
    # Memory: the third round of the same load costs no more than the second (+10 MB of slack
    # for allocator noise); the first warms caches and is not compared.
    assert rounds_rss[2] - rounds_rss[1] < 10 * 1024, rounds_rss
