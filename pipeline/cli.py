"""The `callstream` command line: serve, demo, replay, redact, export."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import logging
import sys
import uuid
from pathlib import Path

from models.settings import FIELDS, SettingsError, load_settings

log = logging.getLogger("callstream")


def setup_logging(level: str = "INFO") -> None:
    from .log_scrubber import install_log_scrubber

    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    install_log_scrubber()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .app import create_app
    from .service import Service
    from .ws_protocol import media_ws_protocol

    overrides = {f: getattr(args, f, None) for f in FIELDS if getattr(args, f, None) is not None}
    try:
        settings = load_settings(overrides=overrides, config_file=args.config)
    except (SettingsError, OSError) as exc:
        print(f"callstream: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level)
    if not settings.api_tokens and not _is_loopback(settings.host) and not settings.insecure:
        print(
            f"callstream: refusing to serve an open API on {settings.host}: set CALLSTREAM_API_TOKENS, "
            "or CALLSTREAM_INSECURE=1 to accept that risk",
            file=sys.stderr,
        )
        return 2
    app = create_app(Service(settings))
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        ws=media_ws_protocol(),
        ws_max_size=1 << 20,
        log_level="warning",
        log_config=None,  # uvicorn logs propagate to the root handler, which has the scrubber
        timeout_graceful_shutdown=30,
    )
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from .replay import load_call_audio, replay_many

    try:
        audio = load_call_audio(args.file, args.rate)
    except (OSError, ValueError) as exc:
        print(f"callstream replay: {exc}", file=sys.stderr)
        return 2
    call_id = args.call_id or f"replay-{uuid.uuid4().hex[:8]}"
    mode = "unmixed" if len(audio.tracks) == 2 else "mixed"
    print(f"replaying {args.file} ({audio.duration_s:.1f} s, {mode}, {audio.rate} Hz) as {args.calls} call(s) to {args.url}")
    try:
        ids = asyncio.run(replay_many(args.url, audio, call_id, args.calls, args.speed, progress=sys.stderr.isatty() or args.calls > 1))
    except OSError as exc:
        print(f"callstream replay: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 1
    print("done:", ", ".join(ids) if len(ids) <= 5 else f"{len(ids)} calls ({ids[0]} ...)")
    return 0


def cmd_redact(args: argparse.Namespace) -> int:
    from .redaction import get_redactor

    redactor = get_redactor()
    lines = [args.text] if args.text is not None else (line.rstrip("\n") for line in sys.stdin)
    for line in lines:
        result = redactor.redact_safe(line)
        if args.json:
            print(
                json.dumps(
                    {
                        "text": result.text,
                        "entities": [
                            {"type": e.type, "start": e.start, "end": e.end, "score": round(e.score, 3)}
                            for e in result.entities
                        ],
                    }
                )
            )
        else:
            print(result.text)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export import ExportError, export_lines
    from .store import open_store

    settings = load_settings(overrides={"data_dir": args.data_dir})
    store_url = settings.store_url
    if not settings.store and not Path(store_url).exists():
        print(f"callstream export: no store at {store_url}", file=sys.stderr)
        return 1
    store = open_store(store_url)
    try:
        if store.get_call(args.call_id) is None:
            print(f"callstream export: no stored call {args.call_id!r}", file=sys.stderr)
            return 1
        try:
            lines = export_lines(store, args.call_id, args.format)
            if args.out:
                with open(args.out, "wb") as fh:
                    n = sum(fh.write(line) > 0 for line in lines)
                print(f"wrote {n} events to {args.out}", file=sys.stderr)
            else:
                for line in lines:
                    sys.stdout.buffer.write(line)
        except ExportError as exc:
            print(f"callstream export: {exc}", file=sys.stderr)
            return 2
    finally:
        store.close()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return asyncio.run(run_demo(args))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="callstream", description="Real-time ACS call pipeline")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the service")
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    s.add_argument("--data-dir", dest="data_dir")
    s.add_argument("--config", help="TOML file of settings (keys as in the settings table, lower case)")
    s.add_argument("--stt", choices=["local", "azure", "acs"])
    s.add_argument("--log-level", dest="log_level")
    s.set_defaults(func=cmd_serve)

    d = sub.add_parser("demo", help="run the service on embedded defaults and replay the bundled sample call")
    d.add_argument("--speed", type=float, default=1.0, help="replay speed (1 = real time, 0 = as fast as possible)")
    d.add_argument("--data-dir", dest="data_dir", default="./callstream-data")
    d.add_argument("--file", help="a WAV file to replay instead of the bundled sample")
    d.set_defaults(func=cmd_demo)

    r = sub.add_parser("replay", help="stream a WAV file to a callstream (or ACS-compatible) /media websocket")
    r.add_argument("file")
    r.add_argument("--url", required=True, help="e.g. ws://127.0.0.1:8080/media")
    r.add_argument("--call-id", dest="call_id")
    r.add_argument("--rate", type=int, choices=[16000, 24000])
    r.add_argument("--speed", type=float, default=1.0, help="1 = real time; 0 = as fast as possible")
    r.add_argument("--calls", type=int, default=1, help="concurrent calls")
    r.set_defaults(func=cmd_replay)

    x = sub.add_parser("redact", help="redact TEXT, or each line of standard input")
    x.add_argument("text", nargs="?")
    x.add_argument("--json", action="store_true", help="print text and entity spans as JSON")
    x.set_defaults(func=cmd_redact)

    e = sub.add_parser("export", help="write a call's redacted transcript")
    e.add_argument("call_id")
    e.add_argument("--format", default="jsonl", choices=["jsonl", "vtt", "txt", "csv"])
    e.add_argument("--out")
    e.add_argument("--data-dir", dest="data_dir")
    e.set_defaults(func=cmd_export)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in ("redact", "export", "replay"):
        logging.basicConfig(level="WARNING")
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
