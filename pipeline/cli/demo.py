"""`callstream demo`: the whole service on embedded defaults, one bundled call, no cloud.

Starts the real ASGI app on a free loopback port, subscribes to the call's agent-assist
stream like an agent desktop would, replays the bundled two-party call (a complaint, a
name and an e-mail address, a card payment) over the ACS protocol, prints
the events readably in the call's time order (`demo_view`), and writes the call's export
with its manifest and verifies it, as a compliance officer would. callstream's own
recorder is on (unless CALLSTREAM_RECORDER says otherwise): the demo has no ACS recording
to pause, and its own recording shows the payment cut out before anything reached disk.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import socket
import sys
from pathlib import Path
from urllib.parse import quote

import uvicorn
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from models.settings import Settings
from pipeline.api.app import create_app
from pipeline.cli.demo_view import Styles, TimeOrderedView
from pipeline.cli.replay import CallAudio, replay_call, sample_call_path
from pipeline.compliance.export import export_lines
from pipeline.compliance.manifest import manifest_path, verify_export
from pipeline.compliance.manifest import write_export as write_manifested_export
from pipeline.compliance.private_files import private_dir
from pipeline.recorder.paths import call_folder
from pipeline.recorder.record import recording_doc
from pipeline.server.ws_protocol import media_ws_protocol_for
from pipeline.service import Service


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_export(service: Service, call_id: str) -> tuple[Path, dict]:
    """The call's JSONL export and its manifest, as `callstream export --out` writes them."""
    out_dir = Path(service.settings.data_dir) / "exports"
    private_dir(out_dir)
    out = out_dir / f"{call_id}.jsonl"
    manifest = write_manifested_export(
        service.store, call_id, "jsonl", out, export_lines(service.store, call_id, "jsonl")
    )
    return out.resolve(), manifest


def recording_summary(service: Service, call_id: str) -> list[str]:
    """What the call's recording holds, in words (nothing when the recorder was off)."""
    doc = recording_doc([json.loads(a.body) for a in service.store.audit(call_id)])
    if doc is None:
        return []
    folder = call_folder(service.settings.data_dir, call_id).resolve()
    spans = ", ".join(
        f"{s['fromMs'] / 1000:.1f}-{s['toMs'] / 1000:.1f} s" for s in doc["removedSpans"]
    )
    lines = [
        f"recording: {folder} ({', '.join(f['file'] for f in doc['files'])})",
        f"           payment audio removed before it was written (digital silence): {spans or 'none'}",
    ]
    for exposure in doc["exposures"]:
        lines.append(
            f"           EXPOSURE: {exposure['fromMs'] / 1000:.1f}-{exposure['toMs'] / 1000:.1f} s "
            "was written before the window reached back (on the call's audit)"
        )
    return lines


def command_name() -> str:
    """How to type `callstream` here: the bare name when it is on PATH (an activated venv),
    else the venv's script, as a newcomer who ran `.venv/bin/callstream demo` would."""
    if shutil.which("callstream"):
        return "callstream"
    script = Path(sys.executable).parent / "callstream"
    if not script.exists():
        return "callstream"
    relative = os.path.relpath(script)
    return str(script) if relative.startswith("..") else f"./{relative}"


def new_call_id(path: Path) -> str:
    """Each run is its own call: a call id is used once (media for an ended call is refused)."""
    stem = "".join(c if c.isalnum() else "-" for c in path.stem.lower()).strip("-")[:40] or "call"
    return f"demo-{stem}-{secrets.token_hex(3)}"


async def serve_until_interrupted(server_task: asyncio.Task) -> None:
    """Wait for Ctrl-C (or SIGTERM). uvicorn takes the signal and stops serving, then raises
    it again for asyncio's own handler, which cancels this task: both end the wait quietly."""
    with contextlib.suppress(asyncio.CancelledError, KeyboardInterrupt):
        await asyncio.shield(server_task)
    current = asyncio.current_task()
    if current is not None and current.cancelling():
        current.uncancel()  # the cancel was our Ctrl-C: it is handled, the demo exits normally


def demo_token(settings: Settings) -> str | None:
    """The API token the demo uses when the API needs one (CALLSTREAM_API_TOKENS or an API
    JWT issuer): the first configured token, or, with only JWTs configured, a random one
    added for this process (the demo cannot mint a JWT)."""
    from pipeline.api.credentials import api_auth_enabled, api_tokens

    if not api_auth_enabled(settings):
        return None
    tokens = api_tokens(settings)
    if tokens:
        return tokens[0]
    token = secrets.token_urlsafe(24)
    settings.api_tokens = token
    return token


async def run_demo(
    args: argparse.Namespace, settings: Settings, path: Path | None, audio: CallAudio
) -> int:
    """The demo on ``settings`` (checked by the CLI, port 0: a free one is taken here),
    replaying ``audio`` (read from ``path``, or the bundled call when None)."""
    from pipeline.cli.log_setup import setup_logging

    setup_logging("WARNING")
    if not os.environ.get("CALLSTREAM_RECORDER"):
        settings.recorder = "local"  # the demo's embedded default
    port = free_port()
    settings.port = port
    path = path or sample_call_path()
    token = demo_token(settings)
    service = Service(settings)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(service),
            host="127.0.0.1",
            port=port,
            ws=media_ws_protocol_for(service),
            ws_max_size=1 << 20,
            log_level="warning",
            log_config=None,
        )
    )
    server_task = asyncio.create_task(server.serve())
    print(
        "callstream demo: starting the service (speech: local pocketsphinx, redaction: Presidio) ...",
        flush=True,
    )
    while not server.started:
        if server_task.done():
            await server_task
            return 1
        await asyncio.sleep(0.1)
    base = f"ws://127.0.0.1:{port}"
    call_id = new_call_id(path)
    # With API tokens configured, the console URL carries one: the page turns it into a cookie.
    token_query = f"?token={quote(token, safe='')}" if token else ""
    console = f"http://127.0.0.1:{port}/console/{quote(call_id, safe='')}{token_query}"
    auth_headers = {"Authorization": f"Bearer {token}"} if token else {}
    live = 0 < args.speed <= 2
    print(f"service on http://127.0.0.1:{port}  (events: {base}/events)")
    print(f"console: {console}")
    if not getattr(args, "keep", False):
        print(
            "  (the console lives as long as the demo: add --keep to keep serving after the call)"
        )
    print("translation: off (needs CALLSTREAM_TRANSLATOR=azure or openai)")
    speed = (
        "real time"
        if args.speed == 1
        else ("as fast as possible" if args.speed == 0 else f"{args.speed:g}x")
    )
    print(f"replaying {path.name} ({audio.duration_s:.0f} s, {speed}) as call {call_id}")
    if not live:
        print(
            "  (faster than real time: the transcript is printed in call order when the call ends;"
        )
        print(
            "   the payment guard runs on the service's clock, as in a live call, so its windows fall"
        )
        print("   out of step with the audio: --speed 1 shows them where they belong)")
    print(flush=True)
    tty = sys.stdout.isatty()
    view = TimeOrderedView(
        write=lambda line: print(line, flush=True), style=Styles(enabled=tty), live=live
    )
    finals = 0
    try:
        async with connect(
            f"{base}/calls/{call_id}/events?since=0", additional_headers=auth_headers
        ) as events:
            replay = asyncio.create_task(replay_call(f"{base}/media", audio, call_id, args.speed))
            while True:
                try:
                    raw = await asyncio.wait_for(events.recv(), timeout=0.25)
                except TimeoutError:
                    view.tick()
                    continue
                except ConnectionClosed:
                    break
                ev = json.loads(raw)
                if ev["type"] == "transcript.final":
                    finals += 1
                    if tty and not live:
                        print(f"\r  decoding ... {finals} utterances", end="", flush=True)
                if ev["type"] == "call.ended" and tty and not live:
                    print("\r" + " " * 40 + "\r", end="")
                view.add(ev)
            await replay
        out, manifest = await asyncio.to_thread(write_export, service, call_id)
        problems = await asyncio.to_thread(verify_export, out)
        cli = command_name()
        print(f"\nexport: {out}")
        print(
            f"        {manifest_path(out)} ({manifest['eventCount']} events, chain head {manifest['chainHead'][:16]}...)"
        )
        if problems:
            print("verify: FAILED: " + "; ".join(problems))
            return 1
        print(f"verify: OK ({cli} verify {out})")
        for line in await asyncio.to_thread(recording_summary, service, call_id):
            print(line)
        print(
            f"re-export any time: {cli} export {call_id} --format txt --data-dir {settings.data_dir}"
        )
        if settings.recorder == "local":
            print(
                f"the recording: {cli} export {call_id} --audio --out DIR --data-dir {settings.data_dir}"
            )
        if getattr(args, "keep", False):
            print(
                f"\nstill serving: console {console} (all calls: http://127.0.0.1:{port}/console{token_query}); press Ctrl-C to stop",
                flush=True,
            )
            await serve_until_interrupted(server_task)
        else:
            print(f"keep the service and its console running after the call: {cli} demo --keep")
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await server_task
    return 0
