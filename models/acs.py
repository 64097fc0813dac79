"""ACS media-streaming and transcription wire messages, decoded with msgspec.

The Python Call Automation SDK has no parser for these frames, so callstream owns one.
One `msgspec` decoder over a tagged union decodes a frame (base64 audio included) in a
couple of microseconds; that matters because every call sends 50 frames per second per
participant. Optional fields seen in newer SDKs (`mark`, DTMF `timestamp`) are tolerated
because msgspec ignores unknown fields; unknown `kind`s are told apart from malformed
frames so that they can be counted separately.
"""

from __future__ import annotations

import enum
import re

import msgspec

# Wire sample rates ACS can stream (pcm16KMono, pcm24KMono).
SUPPORTED_RATES = (16000, 24000)
FRAME_MS = 20


class AudioMetadataPayload(msgspec.Struct, frozen=True):
    subscriptionId: str | None = None
    encoding: str = "PCM"
    sampleRate: int = 16000
    channels: int = 1
    length: int | None = None


class AudioDataPayload(msgspec.Struct, frozen=True):
    data: bytes
    timestamp: str | None = None
    participantRawID: str | None = None
    silent: bool = False


class DtmfDataPayload(msgspec.Struct, frozen=True):
    data: str
    timestamp: str | None = None
    participantRawID: str | None = None


class WordPayload(msgspec.Struct, frozen=True):
    text: str = ""
    offset: int = 0
    duration: int = 0


class TranscriptionMetadataPayload(msgspec.Struct, frozen=True):
    subscriptionId: str | None = None
    locale: str | None = None
    callConnectionId: str | None = None
    correlationId: str | None = None


class ResultStatus(enum.StrEnum):
    INTERMEDIATE = "Intermediate"
    FINAL = "Final"


class TranscriptionDataPayload(msgspec.Struct, frozen=True):
    text: str
    resultStatus: ResultStatus
    format: str = "display"
    confidence: float = 0.0
    offset: int = 0  # 100-ns ticks
    duration: int = 0  # 100-ns ticks
    words: list[WordPayload] = []
    participantRawID: str | None = None


class AudioMetadata(msgspec.Struct, tag_field="kind", tag="AudioMetadata", frozen=True):
    audioMetadata: AudioMetadataPayload


class AudioData(msgspec.Struct, tag_field="kind", tag="AudioData", frozen=True):
    audioData: AudioDataPayload


class DtmfData(msgspec.Struct, tag_field="kind", tag="DtmfData", frozen=True):
    dtmfData: DtmfDataPayload


class TranscriptionMetadata(
    msgspec.Struct, tag_field="kind", tag="TranscriptionMetadata", frozen=True
):
    transcriptionMetadata: TranscriptionMetadataPayload


class TranscriptionData(msgspec.Struct, tag_field="kind", tag="TranscriptionData", frozen=True):
    transcriptionData: TranscriptionDataPayload


AcsMessage = AudioMetadata | AudioData | DtmfData | TranscriptionMetadata | TranscriptionData
KNOWN_KINDS = frozenset(
    {"AudioMetadata", "AudioData", "DtmfData", "TranscriptionMetadata", "TranscriptionData"}
)


class UnknownKind(msgspec.Struct, frozen=True):
    """A well-formed frame of a kind this version does not handle (tolerated, not an error)."""

    kind: str


class MalformedFrame(Exception):
    """A frame that cannot be decoded. The message never contains the payload."""


class _KindOnly(msgspec.Struct):
    kind: str


_SAFE_PATH = re.compile(r" - at `\$[A-Za-z0-9_.\[\]]*`$")
_decoder = msgspec.json.Decoder(AcsMessage)
_kind_decoder = msgspec.json.Decoder(_KindOnly)
# Besides DecodeError, msgspec raises RecursionError for JSON nested too deeply (a
# thousand levels, in a field that is otherwise ignored) and UnicodeEncodeError for a str
# frame holding a lone surrogate: malformed frames too.
_UNDECODABLE = (RecursionError, UnicodeError)


def decode_message(raw: bytes | str) -> AcsMessage | UnknownKind:
    """Decode one ACS text frame.

    Raises MalformedFrame (only) with a payload-free reason. The fast path is a single
    decode; only a failing frame pays for the second look that tells unknown kinds apart.
    """
    try:
        return _decoder.decode(raw)
    except msgspec.DecodeError as exc:
        first = exc
    except _UNDECODABLE as exc:
        raise MalformedFrame(_undecodable(exc)) from None
    try:
        kind = _kind_decoder.decode(raw).kind
    except (msgspec.DecodeError, *_UNDECODABLE):
        raise MalformedFrame(_reason(first)) from None
    if kind not in KNOWN_KINDS:
        return UnknownKind(kind=kind[:64])
    raise MalformedFrame(_reason(first)) from None


def _reason(exc: msgspec.DecodeError) -> str:
    # msgspec names the rule and the path (`$.audioData.data`); for enums and tags it also
    # quotes the offending value, which is payload, in single or double quotes (a Python
    # repr: the value may hold either quote). Keep the rule up to the first quote, and the
    # path only when it is made of field names and indexes.
    message = str(exc)
    path = _SAFE_PATH.search(message)
    rule = message[: path.start()] if path else message.split(" - at ", 1)[0]
    quote = min((i for i in (rule.find("'"), rule.find('"')) if i >= 0), default=-1)
    if quote >= 0:
        rule = rule[:quote].rstrip() + " …"
    return (rule + (path.group() if path else ""))[:200]


def _undecodable(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "JSON is nested too deeply"
    return "text is not valid UTF-8"


TICKS_PER_MS = 10_000


def ticks_to_ms(ticks: int) -> int:
    """ACS transcription offsets and durations are 100-ns ticks."""
    return ticks // TICKS_PER_MS


def frame_bytes(sample_rate: int) -> int:
    """Bytes in one 20 ms PCM16 mono frame at `sample_rate`."""
    return sample_rate * FRAME_MS // 1000 * 2
