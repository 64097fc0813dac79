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
from importlib import resources
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


class AudioFileError(ValueError):
    """A file that cannot be replayed; the message names the file and what is wrong (one line)."""


def _open_wav(path: str | Path) -> wave.Wave_read:
    p = Path(path)
    try:
        if p.is_dir():
            raise AudioFileError(f"{path}: is a directory, not a WAV file")
        if p.stat().st_size == 0:
            raise AudioFileError(f"{path}: the file is empty, not a WAV file")
        return wave.open(str(p), "rb")
    except FileNotFoundError:
        raise AudioFileError(f"{path}: no such file") from None
    except EOFError:
        raise AudioFileError(f"{path}: not a WAV file (too short for a WAV header)") from None
    except wave.Error as exc:
        why = str(exc)
        if why.startswith("unknown format"):
            raise AudioFileError(
                f"{path}: not a PCM WAV file ({why}); only 16-bit PCM WAV files can be replayed"
            ) from None
        raise AudioFileError(f"{path}: not a WAV file ({why})") from None
    except OSError as exc:
        raise AudioFileError(f"{path}: cannot read it ({exc.strerror or exc})") from None


def _check_format(path: str | Path, w: wave.Wave_read) -> None:
    if w.getsampwidth() != 2:
        raise AudioFileError(
            f"{path}: {8 * w.getsampwidth()}-bit audio; only 16-bit PCM WAV files can be replayed"
        )
    if w.getnchannels() not in (1, 2):
        raise AudioFileError(
            f"{path}: {w.getnchannels()} channels; replay takes mono (mixed) or stereo (unmixed)"
        )
    if w.getframerate() <= 0:
        raise AudioFileError(f"{path}: the WAV header gives no sample rate")
    if w.getnframes() == 0:
        raise AudioFileError(f"{path}: the WAV file holds no audio")


def sample_call_path() -> Path:
    """The two-party call bundled with the package (`callstream demo` replays it)."""
    return Path(str(resources.files("pipeline.cli") / "assets" / "sample_call.wav"))


def load_call_audio(path: str | Path, rate: int | None = None) -> CallAudio:
    """The file's audio as ACS would stream it; AudioFileError (a ValueError) names the file
    and what is wrong when it cannot be replayed."""
    if rate is not None and rate not in (16000, 24000):
        raise ValueError("ACS streams 16000 or 24000 Hz")
    with _open_wav(path) as w:
        _check_format(path, w)
        src_rate, nch = w.getframerate(), w.getnchannels()
        try:
            raw = w.readframes(w.getnframes())
        except (wave.Error, EOFError, OSError) as exc:
            raise AudioFileError(f"{path}: cannot read its audio ({exc or 'cut short'})") from None
    raw = raw[: len(raw) // (2 * nch) * (2 * nch)]  # whole frames only (a truncated file)
    if not raw:
        raise AudioFileError(f"{path}: the WAV file holds no audio")
    samples = np.frombuffer(raw, dtype="<i2").reshape(-1, nch)
    target = rate or (src_rate if src_rate in (16000, 24000) else 16000)
    if target != src_rate:
        samples = soxr.resample(samples, src_rate, target, quality="HQ")
        samples = np.ascontiguousarray(samples.astype("<i2").reshape(-1, nch))
    if nch == 1:
        return CallAudio(target, [(None, samples[:, 0].tobytes())])
    return CallAudio(
        target, [(CUSTOMER_ID, samples[:, 0].tobytes()), (AGENT_ID, samples[:, 1].tobytes())]
    )


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
            ts = (
                (t0_wall + dt.timedelta(milliseconds=20 * i))
                .isoformat(timespec="milliseconds")
                .replace("+00:00", "Z")
            )
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
    url: str,
    audio: CallAudio,
    call_id: str,
    calls: int,
    speed: float,
    progress: bool = True,
    token: str | None = None,
) -> list[str]:
    from tqdm import tqdm

    ids = [call_id] if calls == 1 else [f"{call_id}-{k + 1}" for k in range(calls)]
    bar = tqdm(total=audio.frames * len(ids), unit="frame", disable=not progress, desc="replay")
    try:
        await asyncio.gather(
            *(replay_call(url, audio, cid, speed, lambda: bar.update(1), token) for cid in ids)
        )
    finally:
        bar.close()
    return ids
