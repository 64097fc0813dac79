"""An ACS-protocol client: replays a WAV file to `/media` as ACS would stream it.

AudioMetadata first, then one AudioData message per participant every 20 ms, with the
timestamp of the frame's place in the call (so offsets are right even at `--speed 0`),
and `silent: true` on digital silence as ACS marks it. A stereo file is sent unmixed
(left = customer, right = agent), a mono file mixed.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import wave
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np
import soxr
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError

CUSTOMER_ID = "4:+15550100"
AGENT_ID = "8:acs:agent"
_enc = msgspec.json.Encoder()


@dataclass
class CallAudio:
    rate: int
    tracks: list[tuple[str | None, bytes]]  # (participant raw id or None for mixed, PCM16 mono)

    @property
    def frame_bytes(self) -> int:
        return self.rate // 50 * 2

    @property
    def frames(self) -> int:
        return max(len(pcm) for _, pcm in self.tracks) // self.frame_bytes

    @property
    def duration_s(self) -> float:
        return self.frames * 0.02


def load_call_audio(path: str | Path, rate: int | None = None) -> CallAudio:
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM WAV files can be replayed")
        src_rate, nch = w.getframerate(), w.getnchannels()
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, nch)
    if nch not in (1, 2):
        raise ValueError(f"{path}: {nch} channels; replay takes mono (mixed) or stereo (unmixed)")
    target = rate or (src_rate if src_rate in (16000, 24000) else 16000)
    if target not in (16000, 24000):
        raise ValueError("ACS streams 16000 or 24000 Hz")
    if target != src_rate:
        samples = soxr.resample(samples, src_rate, target, quality="HQ")
        samples = np.ascontiguousarray(samples.astype("<i2").reshape(-1, nch))
    if nch == 1:
        return CallAudio(target, [(None, samples[:, 0].tobytes())])
    return CallAudio(target, [(CUSTOMER_ID, samples[:, 0].tobytes()), (AGENT_ID, samples[:, 1].tobytes())])


def metadata_message(rate: int) -> bytes:
    return _enc.encode(
        {
            "kind": "AudioMetadata",
            "audioMetadata": {
                "subscriptionId": "replay",
                "encoding": "PCM",
                "sampleRate": rate,
                "channels": 1,
                "length": rate // 50 * 2,
            },
        }
    )


def audio_message(chunk: bytes, participant: str | None, timestamp: str) -> bytes:
    return _enc.encode(
        {
            "kind": "AudioData",
            "audioData": {
                "timestamp": timestamp,
                "participantRawID": participant,
                "data": base64.b64encode(chunk).decode(),
                "silent": not any(chunk),
            },
        }
    )


async def replay_call(
    url: str,
    audio: CallAudio,
    call_id: str,
    speed: float = 1.0,
    on_frame: Callable[[], None] | None = None,
    token: str | None = None,
) -> int:
    """Stream one call; returns the number of messages sent. ``token`` goes into the
    handshake's ``Authorization: Bearer`` header, where ACS puts its JWT."""
    fb = audio.frame_bytes
    t0_wall = dt.datetime.now(dt.UTC)
    sep = "&" if "?" in url else "?"
    sent = 0
    headers = {"x-ms-call-connection-id": call_id}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    async with connect(
        f"{url}{sep}callId={call_id}",
        additional_headers=headers,
        max_size=None,
        compression=None,
    ) as ws:
        await ws.send(metadata_message(audio.rate).decode())
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i in range(audio.frames):
            ts = (t0_wall + dt.timedelta(milliseconds=20 * i)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            for participant, pcm in audio.tracks:
                chunk = pcm[i * fb : (i + 1) * fb]
                if len(chunk) < fb:
                    chunk = chunk + bytes(fb - len(chunk))
                await ws.send(audio_message(chunk, participant, ts).decode())
                sent += 1
            if on_frame is not None:
                on_frame()
            if speed > 0:
                delay = start + (i + 1) * 0.02 / speed - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
    refused = ws.close_exc
    if isinstance(refused, ConnectionClosedError) and refused.rcvd is not None:
        raise refused  # the server closed first with an error (1008: the token was refused)
    return sent


async def replay_many(
    url: str, audio: CallAudio, call_id: str, calls: int, speed: float, progress: bool = True, token: str | None = None
) -> list[str]:
    from tqdm import tqdm

    ids = [call_id] if calls == 1 else [f"{call_id}-{k + 1}" for k in range(calls)]
    bar = tqdm(total=audio.frames * len(ids), unit="frame", disable=not progress, desc="replay")
    try:
        await asyncio.gather(*(replay_call(url, audio, cid, speed, lambda: bar.update(1), token) for cid in ids))
    finally:
        bar.close()
    return ids
