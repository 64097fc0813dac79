"""The `callstream` command line: serve, demo, replay, redact, export, verify, purge."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import logging
import os
import sys
import uuid
from pathlib import Path

from models.settings import FIELDS, SettingsError, load_settings

log = logging.getLogger("callstream")


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Root handler on stderr, then the scrubber (and the credential filter) on it.

    ``fmt="json"``: one JSON object per line with the call id (`serve`'s default, for log
    collectors); ``"text"``: one readable line per record (the demo and the other
    commands, which people read). Uvicorn's loggers propagate to this handler.
    """
    from .auth import install_credential_filter
    from .log_scrubber import JsonFormatter, install_log_scrubber

    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler])  # no-op if already configured
    if level.upper() != "DEBUG":
        # The Azure SDK logs every request and response to ACS (URL, headers) at INFO: four
        # lines per pause with no call id. Its warnings and errors still come through.
        logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)
    install_log_scrubber()
    install_credential_filter()  # tokens and the callback secret never reach a log line


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cmd_serve(args: argparse.Namespace) -> int:
    overrides = {f: getattr(args, f, None) for f in FIELDS if getattr(args, f, None) is not None}
    try:
        settings = load_settings(overrides=overrides, config_file=args.config)
    except (SettingsError, OSError) as exc:
        print(f"callstream: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level, settings.log_format)
    from .auth import api_auth_enabled, startup_check

    if not api_auth_enabled(settings) and not _is_loopback(settings.host) and not settings.insecure:
        print(
            f"callstream: refusing to serve an open API on {settings.host}: set CALLSTREAM_API_TOKENS, "
            "or CALLSTREAM_INSECURE=1 to accept that risk",
            file=sys.stderr,
        )
        return 2
    errors, warnings = startup_check(settings, _is_loopback(settings.host))
    for error in errors:
        print(f"callstream: {error}", file=sys.stderr)
    if errors:
        return 2
    for warning in warnings:
        print(f"callstream: WARNING: {warning}", file=sys.stderr, flush=True)
        log.warning("%s", warning)
    from .server_runner import run_server, supervise_workers, worker_env_check

    if args.workers and args.workers > 1:
        problem = worker_env_check(settings, args.workers)
        if problem:
            print(f"callstream: {problem}", file=sys.stderr)
            return 2
        argv = sys.argv[2:] if len(sys.argv) > 2 and sys.argv[1] == "serve" else []
        return supervise_workers(_without_workers(argv), args.workers)
    return run_server(settings, reuse_port=args.reuse_port)


def _without_workers(argv: list[str]) -> list[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--workers":
            skip = True
        elif not arg.startswith("--workers="):
            out.append(arg)
    return out


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
    from websockets.exceptions import ConnectionClosed

    progress = sys.stderr.isatty() or args.calls > 1
    try:
        ids = asyncio.run(replay_many(args.url, audio, call_id, args.calls, args.speed, progress=progress, token=args.token))
    except OSError as exc:
        print(f"callstream replay: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 1
    except ConnectionClosed as exc:
        code, reason = (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else (None, "")
        print(f"callstream replay: the server closed the stream (code {code}: {reason or 'no reason'})", file=sys.stderr)
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


def _open_store_for(args: argparse.Namespace, command: str):  # noqa: ANN202
    from .store import open_store

    settings = load_settings(overrides={"data_dir": args.data_dir})
    store_url = settings.store_url
    if not settings.store and not Path(store_url).exists():
        print(f"callstream {command}: no store at {store_url}", file=sys.stderr)
        return None, settings
    return open_store(store_url), settings


def cmd_export(args: argparse.Namespace) -> int:
    from .export import ExportError, export_lines
    from .manifest import write_export

    if (args.call_id is None) == (args.since is None and args.until is None):
        print("callstream export: give a CALL_ID, or --since/--until with --out DIR", file=sys.stderr)
        return 2
    store, _ = _open_store_for(args, "export")
    if store is None:
        return 1
    try:
        if args.call_id is None:
            return _bulk_export(store, args)
        if store.get_call(args.call_id) is None:
            print(f"callstream export: no stored call {args.call_id!r}", file=sys.stderr)
            return 1
        try:
            lines = export_lines(store, args.call_id, args.format)
            if args.out:
                manifest = write_export(store, args.call_id, args.format, Path(args.out), lines)
                print(f"wrote {args.out} ({manifest['eventCount']} events, chain head {manifest['chainHead'][:16]}...)"
                      f" and {args.out}.manifest.json", file=sys.stderr)  # fmt: skip
            else:
                for line in lines:
                    sys.stdout.buffer.write(line)
        except ExportError as exc:
            print(f"callstream export: {exc}", file=sys.stderr)
            return 2
    finally:
        store.close()
    return 0


def _bulk_export(store, args: argparse.Namespace) -> int:  # noqa: ANN001
    """Every call that started in [--since, --until) into --out DIR, one call at a time."""
    from tqdm import tqdm

    from .export import export_lines
    from .manifest import write_export

    if not args.out:
        print("callstream export: bulk export needs --out DIR", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    calls = list(r.call_id for r in store.calls_between(args.since, args.until))  # ids only: memory stays flat
    for call_id in tqdm(calls, desc="export", unit="call", disable=not sys.stderr.isatty() and not args.progress):
        target = out / f"{_safe_name(call_id)}.{args.format}"
        write_export(store, call_id, args.format, target, export_lines(store, call_id, args.format))
    print(f"exported {len(calls)} calls to {out}", file=sys.stderr)
    return 0


def _safe_name(call_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in call_id)[:200]


def cmd_verify(args: argparse.Namespace) -> int:
    from .manifest import verify_export

    problems = verify_export(args.path)
    if problems:
        for p in problems:
            print(f"FAILED: {p}")
        return 1
    print(f"OK: {args.path} matches its manifest")
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    from .retention import purge_now

    store, settings = _open_store_for(args, "purge")
    if store is None:
        return 1
    days = args.days if args.days is not None else settings.retention_days
    if days is None:
        print("callstream purge: set --days or CALLSTREAM_RETENTION_DAYS", file=sys.stderr)
        return 2
    try:
        purged = purge_now(store, days, actor="cli")
    finally:
        store.close()
    print(f"purged {len(purged)} calls older than {days:g} days (calls on legal hold are kept)")
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
    s.add_argument(
        "--workers", type=int, default=1,
        help="worker processes sharing the port (SO_REUSEPORT); more than one needs CALLSTREAM_BUS=redis://...",
    )  # fmt: skip
    s.add_argument("--reuse-port", dest="reuse_port", action="store_true", help=argparse.SUPPRESS)
    s.set_defaults(func=cmd_serve)

    d = sub.add_parser("demo", help="run the service on embedded defaults and replay the bundled sample call")
    d.add_argument("--speed", type=float, default=1.0, help="replay speed (1 = real time, 0 = as fast as possible)")
    d.add_argument("--data-dir", dest="data_dir", default="./callstream-data")
    d.add_argument("--file", help="a WAV file to replay instead of the bundled sample")
    d.add_argument("--keep", action="store_true", help="keep serving (and the console) after the replay, until Ctrl-C")
    d.set_defaults(func=cmd_demo)

    r = sub.add_parser("replay", help="stream a WAV file to a callstream (or ACS-compatible) /media websocket")
    r.add_argument("file")
    r.add_argument("--url", required=True, help="e.g. ws://127.0.0.1:8080/media")
    r.add_argument("--call-id", dest="call_id")
    r.add_argument("--rate", type=int, choices=[16000, 24000])
    r.add_argument("--speed", type=float, default=1.0, help="1 = real time; 0 = as fast as possible")
    r.add_argument("--calls", type=int, default=1, help="concurrent calls")
    r.add_argument(
        "--token",
        default=os.environ.get("CALLSTREAM_REPLAY_TOKEN") or None,
        help="sent as 'Authorization: Bearer TOKEN' on the handshake, as ACS sends its JWT "
        "(default: $CALLSTREAM_REPLAY_TOKEN)",
    )
    r.set_defaults(func=cmd_replay)

    x = sub.add_parser("redact", help="redact TEXT, or each line of standard input")
    x.add_argument("text", nargs="?")
    x.add_argument("--json", action="store_true", help="print text and entity spans as JSON")
    x.set_defaults(func=cmd_redact)

    e = sub.add_parser("export", help="write a call's redacted transcript (and its manifest), or many calls")
    e.add_argument("call_id", nargs="?")
    e.add_argument("--format", default="jsonl", choices=["jsonl", "vtt", "txt", "csv"])
    e.add_argument("--out", help="a file (one call) or a folder (--since/--until)")
    e.add_argument("--since", help="bulk: calls that started at or after this ISO 8601 time")
    e.add_argument("--until", help="bulk: calls that started before this ISO 8601 time")
    e.add_argument("--progress", action="store_true", help="show the progress bar even when not on a terminal")
    e.add_argument("--data-dir", dest="data_dir")
    e.set_defaults(func=cmd_export)

    v = sub.add_parser("verify", help="check an export against its manifest; names the event that broke the chain")
    v.add_argument("path")
    v.set_defaults(func=cmd_verify)

    g = sub.add_parser("purge", help="delete calls older than the retention period (legal holds are kept)")
    g.add_argument("--days", type=float)
    g.add_argument("--data-dir", dest="data_dir")
    g.set_defaults(func=cmd_purge)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in ("redact", "export", "replay", "verify", "purge"):
        logging.basicConfig(level="WARNING")
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
