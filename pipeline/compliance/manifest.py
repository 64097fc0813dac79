"""The manifest that travels with every export, and the check that an export still matches it.

A manifest names the call, its first and last seq, the number of events, every event's
chain link and the head, the policy version, redaction counts, pause intervals and
exposures (from the audit), and the SHA-256 of the exported file. A call recorded by
callstream's own recorder also has `recording`: each file with its SHA-256, the spans
removed and any exposure, so the audio is tied to the same chain head as the transcript.
``verify`` recomputes the chain over a JSONL export and names the first event that was
altered, removed or moved; for the other formats it checks the file's hash, and for an
audio export (`recording.json`) the hash of every recording file beside it too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.compliance import chain
from pipeline.compliance.audit_summary import summarize
from pipeline.compliance.export_analytics import side_file_of
from pipeline.compliance.private_files import open_private
from pipeline.compliance.store import EventStore
from pipeline.recorder.record import recording_doc

__all__ = [
    "ManifestError",
    "build_manifest",
    "manifest_path",
    "read_manifest",
    "verify_export",
    "write_export",
]


class ManifestError(ValueError):
    """An export cannot be checked at all: its manifest (or the export itself) is missing,
    unreadable or not a manifest. The message (one line) names the file."""


def manifest_path(export: str | Path) -> Path:
    return Path(f"{export}.manifest.json")


def _audit_summary(store: EventStore, call_id: str) -> dict[str, Any]:
    records = [json.loads(a.body) for a in store.audit(call_id)]
    s = summarize(records)
    pauses = [
        {"window": w["window"], "trigger": w["trigger"], "fromMs": w["startMs"], "toMs": w.get("endMs"),
         "pauseConfirmedMs": w.get("pauseConfirmedMs")}
        for w in s["windows"]
    ]  # fmt: skip
    exposures = [
        {"window": e["window"], "fromMs": e["fromMs"], "toMs": e["toMs"], "reason": e["reason"]}
        for e in s["exposures"]
    ]
    summary = {
        "policyVersion": s["policyVersion"],
        "redactionCounts": s["redactionCounts"],
        "pauseIntervals": pauses,
        "exposures": exposures,
    }
    recording = recording_doc(records)
    if recording is not None:
        summary["recording"] = recording
    return summary


def build_manifest(
    store: EventStore, call_id: str, fmt: str, export_sha256: str | None = None
) -> dict[str, Any]:
    links: list[str] = []
    seqs: list[int] = []
    for seq, _body, link in store.read_chain(call_id):
        seqs.append(seq)
        links.append(link)
    return {
        "manifestVersion": 1,
        "chain": chain.VERSION,
        "callId": call_id,
        "format": fmt,
        "firstSeq": seqs[0] if seqs else None,
        "lastSeq": seqs[-1] if seqs else None,
        "eventCount": len(seqs),
        "chainHead": links[-1] if links else chain.genesis(call_id),
        "links": links,
        **_audit_summary(store, call_id),
        "exportSha256": export_sha256,
    }


def write_export(
    store: EventStore, call_id: str, fmt: str, out: Path, lines: Iterator[bytes]
) -> dict[str, Any]:
    """Stream ``lines`` to ``out`` and write its manifest beside it; returns the manifest."""
    digest = hashlib.sha256()
    with open_private(out) as fh:
        for line in lines:
            fh.write(line)
            digest.update(line)
    manifest = build_manifest(store, call_id, fmt, digest.hexdigest())
    with open_private(manifest_path(out)) as fh:
        fh.write(json.dumps(manifest, indent=1).encode())
    if fmt == "csv":  # a table of utterances has no place for the call's figures: beside it
        with open_private(analytics_path(out)) as fh:
            fh.write(side_file_of(store, call_id))
    return manifest


def analytics_path(out: Path) -> Path:
    """Where a CSV export's analytics go: `<out>.analytics.csv`."""
    return out.with_name(out.name + ".analytics.csv")


# Keys every manifest has, with their types; a JSONL manifest also needs what the chain check reads.
_REQUIRED: dict[str, type | tuple[type, ...]] = {"format": str}
_REQUIRED_JSONL: dict[str, type | tuple[type, ...]] = {
    "callId": str,
    "links": list,
    "firstSeq": (int, type(None)),
    "eventCount": int,
    "chainHead": str,
}


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest beside export ``path``; ManifestError when it is missing or not a manifest."""
    mpath = manifest_path(path)
    try:
        text = mpath.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(f"no manifest at {mpath}") from None
    except IsADirectoryError:
        raise ManifestError(f"{mpath} is a directory, not a manifest") from None
    except UnicodeDecodeError:
        raise ManifestError(f"{mpath} is not a manifest (not UTF-8 text)") from None
    except OSError as exc:
        raise ManifestError(f"cannot read {mpath} ({exc.strerror or exc})") from None
    try:
        manifest = json.loads(text)
    except ValueError as exc:
        raise ManifestError(f"{mpath} is not a manifest (not JSON: {exc})") from None
    if not isinstance(manifest, dict):
        raise ManifestError(
            f"{mpath} is not a manifest (a JSON {type(manifest).__name__}, not an object)"
        )
    required = {**_REQUIRED, **(_REQUIRED_JSONL if manifest.get("format") == "jsonl" else {})}
    for key, kind in required.items():
        if key not in manifest:
            raise ManifestError(f"{mpath} is not a manifest (no {key!r})")
        value = manifest[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ManifestError(f"{mpath} is not a manifest ({key!r} is {json.dumps(value)[:40]})")
    if manifest["format"] == "jsonl" and not all(
        isinstance(link, str) for link in manifest["links"]
    ):
        raise ManifestError(f"{mpath} is not a manifest ('links' must be a list of strings)")
    return manifest


def verify_export(path: str | Path) -> list[str]:
    """Problems found (empty when the export matches its manifest).

    Raises ManifestError when there is nothing to check against (no manifest, a manifest
    that is not JSON or not a manifest) or the export itself cannot be read.
    """
    path = Path(path)
    manifest = read_manifest(path)
    try:
        if manifest.get("format") != "jsonl":
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            problems = (
                []
                if digest == manifest.get("exportSha256")
                else ["the export file was altered (its SHA-256 does not match the manifest)"]
            )
            if manifest.get("format") == "audio":
                problems += _verify_audio(path.parent, manifest)
            return problems
        return _verify_jsonl(path, manifest)
    except FileNotFoundError:
        raise ManifestError(
            f"no export at {path} (its manifest is at {manifest_path(path)})"
        ) from None
    except IsADirectoryError:
        raise ManifestError(f"{path} is a directory, not an export") from None
    except OSError as exc:
        raise ManifestError(f"cannot read {path} ({exc.strerror or exc})") from None


def _verify_audio(folder: Path, manifest: dict[str, Any]) -> list[str]:
    """Each recording file the manifest lists, beside `recording.json`, by its SHA-256."""
    problems = []
    for entry in (manifest.get("recording") or {}).get("files", []):
        name = Path(str(entry.get("file", ""))).name
        try:
            h = hashlib.sha256()
            with open(folder / name, "rb") as fh:
                while block := fh.read(1 << 20):
                    h.update(block)
        except OSError:
            problems.append(f"the recording {name} is missing")
            continue
        if h.hexdigest() != entry.get("sha256"):
            problems.append(f"the recording {name} was altered (its SHA-256 does not match)")
    return problems


def _verify_jsonl(path: Path, manifest: dict[str, Any]) -> list[str]:
    call_id = manifest["callId"]
    links: list[str] = manifest["links"]
    first = manifest["firstSeq"] or 1
    prev = chain.genesis(call_id)
    expected_seq = first
    index = 0
    with open(path, "rb") as fh:
        for n, line in enumerate(fh, 1):
            body = line.rstrip(b"\n")
            try:
                seq = int(json.loads(body)["seq"])
            except (ValueError, KeyError, TypeError):
                return [f"line {n} is not an event (expected seq {expected_seq})"]
            if seq > expected_seq:
                return [f"event seq {expected_seq} is missing (line {n} holds seq {seq})"]
            if seq < expected_seq:
                return [f"event seq {seq} is out of order (line {n}, after seq {expected_seq - 1})"]
            if index >= len(links):
                return [f"event seq {seq} is not in the manifest (line {n})"]
            prev = chain.link(prev, body)
            if prev != links[index]:
                return [
                    f"event seq {seq} was altered (line {n}: its chain link does not match the manifest)"
                ]
            index += 1
            expected_seq += 1
    problems = []
    if index != manifest["eventCount"]:
        problems.append(
            f"the export ends after {index} events; the manifest lists {manifest['eventCount']} (seq {expected_seq} onwards missing)"
        )
    elif prev != manifest["chainHead"]:
        problems.append("the chain head does not match the manifest")
    return problems
