"""`callstream demo`: the whole service on embedded defaults, one bundled call, no cloud.

Starts the real ASGI app on a free loopback port, subscribes to the agent-assist
firehose like an agent desktop would, replays the bundled two-party call over the ACS
protocol, prints the live events readably, and writes the call's export.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import socket
import sys
from importlib import resources
from pathlib import Path
from urllib.parse import quote

import uvicorn
from websockets.asyncio.client import connect

from models.settings import Settings, load_settings

from .app import create_app
from .export import export_lines
from .replay import load_call_audio, replay_call
from .service import Service
from .ws_protocol import media_ws_protocol_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sample_call_path() -> Path:
    return Path(str(resources.files("pipeline") / "assets" / "sample_call.wav"))


def format_event(ev: dict) -> str | None:
    t = ev["type"]
    if t == "transcript.final":
        secs = ev["startMs"] / 1000
        return f"  {int(secs // 60):02d}:{secs % 60:04.1f}  {ev['role']:<8}  {ev['text']}"
    if t == "transcript.partial":
        return None
    if t == "call.started":
        return f"● call {ev['callId']} started ({ev['mode']}, {ev['sampleRate']} Hz)"
    if t == "participant.joined":
        return f"  + {ev['role']} joined ({ev['participant']})"
    if t == "call.ended":
        return f"● call ended ({ev['reason']})"
    return f"  [{t}] " + json.dumps({k: v for k, v in ev.items() if k not in ("type", "callId", "time")})


def write_export(service: Service, call_id: str) -> Path:
    out_dir = Path(service.settings.data_dir) / "exports"
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{call_id}.jsonl"
    with open(out, "wb") as fh:
        for line in export_lines(service.store, call_id, "jsonl"):
            fh.write(line)
    return out.resolve()


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
    from .auth import api_auth_enabled, api_tokens

    if not api_auth_enabled(settings):
        return None
    tokens = api_tokens(settings)
    if tokens:
        return tokens[0]
    token = secrets.token_urlsafe(24)
    settings.api_tokens = token
    return token


async def run_demo(args: argparse.Namespace) -> int:
    from .cli import setup_logging

    setup_logging("WARNING")
    port = free_port()
    # The demo's replay is not ACS and has no ACS token: media auth is off (loopback only).
    settings = load_settings(overrides={"host": "127.0.0.1", "port": port, "data_dir": args.data_dir, "media_auth": "off"})
    token = demo_token(settings)
    service = Service(settings)
    server = uvicorn.Server(
        uvicorn.Config(create_app(service), host="127.0.0.1", port=port, ws=media_ws_protocol_for(service), ws_max_size=1 << 20, log_level="warning", log_config=None)
    )
    server_task = asyncio.create_task(server.serve())
    print("callstream demo: starting the service (speech: local pocketsphinx, redaction: Presidio) ...")
    while not server.started:
        if server_task.done():
            await server_task
            return 1
        await asyncio.sleep(0.1)
    base = f"ws://127.0.0.1:{port}"
    path = Path(args.file) if args.file else sample_call_path()
    call_id = "demo-" + path.stem.replace("_", "-")
    # With API tokens configured, the console URL carries one: the page turns it into a cookie.
    token_query = f"?token={quote(token, safe='')}" if token else ""
    console = f"http://127.0.0.1:{port}/console/{quote(call_id, safe='')}{token_query}"
    auth_headers = {"Authorization": f"Bearer {token}"} if token else {}
    print(f"service on http://127.0.0.1:{port}  (events: {base}/events)")
    print(f"console: {console}", flush=True)
    print("translation: off (needs CALLSTREAM_TRANSLATOR=azure or openai)")
    audio = load_call_audio(path)
    print(f"replaying {path.name} ({audio.duration_s:.0f} s, speed {args.speed or 'max'}) as call {call_id}\n")
    partial_shown = False
    try:
        async with connect(f"{base}/calls/{call_id}/events?since=0", additional_headers=auth_headers) as events:
            replay = asyncio.create_task(replay_call(f"{base}/media", audio, call_id, args.speed))
            async for raw in events:
                ev = json.loads(raw)
                if ev["type"] == "transcript.partial" and sys.stdout.isatty():
                    print(f"\r  …        {ev['role']:<8}  {ev['text'][:70]:<70}", end="", flush=True)
                    partial_shown = True
                    continue
                line = format_event(ev)
                if line:
                    if partial_shown:
                        print("\r" + " " * 90 + "\r", end="")
                        partial_shown = False
                    print(line, flush=True)
            await replay
        out = await asyncio.to_thread(write_export, service, call_id)
        print(f"\nexport written to {out}")
        print(f"re-export any time: callstream export {call_id} --format jsonl --data-dir {settings.data_dir}")
        if getattr(args, "keep", False):
            print(f"\nstill serving: console {console} (all calls: http://127.0.0.1:{port}/console{token_query}); press Ctrl-C to stop", flush=True)
            await serve_until_interrupted(server_task)
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await server_task
    return 0
