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
from typing import NoReturn

from models.settings import FIELDS, Settings, SettingsError, load_settings
from pipeline.cli.common import CliError, check_data_dir, checked_settings, non_negative, one_line
from pipeline.cli.log_setup import setup_logging
from pipeline.cli.records import cmd_export, cmd_purge, cmd_verify
from pipeline.version import version

log = logging.getLogger("callstream")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def engine_setting_problems(settings: Settings) -> list[str]:
    """Settings that load but cannot start their engine: said at start, naming what is missing,
    instead of failing when the first call arrives (or as an error deep in an SDK)."""
    problems = []
    if settings.stt == "azure" and not settings.speech_endpoint:
        if not settings.speech_region:
            problems.append(
                "CALLSTREAM_STT=azure needs CALLSTREAM_SPEECH_REGION (or CALLSTREAM_SPEECH_ENDPOINT)"
            )
        elif not settings.speech_key:
            problems.append(
                "CALLSTREAM_STT=azure with CALLSTREAM_SPEECH_REGION needs CALLSTREAM_SPEECH_KEY"
            )
    return problems


def _claim_problems(settings: Settings) -> list[str]:
    from pipeline.compliance.store_claim import StoreInUse, claim_store

    try:
        claim_store(settings)
    except StoreInUse as exc:
        return [str(exc)]
    return []


def cmd_serve(args: argparse.Namespace) -> int:
    if args.workers is not None and args.workers < 1:
        raise CliError(f"--workers {args.workers}: give 1 or more", 2)
    overrides = {f: getattr(args, f, None) for f in FIELDS if getattr(args, f, None) is not None}
    settings = load_settings(
        overrides=overrides, config_file=args.config
    )  # main() says what is wrong
    check_data_dir(settings)
    setup_logging(settings.log_level, settings.log_format)
    from pipeline.analytics.rules import rules_problems
    from pipeline.api.auth import startup_check
    from pipeline.api.callback_auth import callback_startup_check
    from pipeline.api.credentials import api_auth_enabled
    from pipeline.consult.experts import expert_problems
    from pipeline.privacy.pseudonyms import key_problems

    if not api_auth_enabled(settings) and not _is_loopback(settings.host) and not settings.insecure:
        print(
            f"callstream: refusing to serve an open API on {settings.host}: set CALLSTREAM_API_TOKENS, "
            "or CALLSTREAM_INSECURE=1 to accept that risk",
            file=sys.stderr,
        )
        return 2
    errors, warnings = startup_check(settings, _is_loopback(settings.host))
    for more_errors, more_warnings in (callback_startup_check(settings), key_problems(settings)):
        errors, warnings = errors + more_errors, warnings + more_warnings
    errors += engine_setting_problems(settings)
    errors += rules_problems(settings.categories_file)
    errors += expert_problems(settings)
    errors += _claim_problems(settings)
    for error in errors:
        print(f"callstream: {error}", file=sys.stderr)
    if errors:
        return 2
    for warning in warnings:
        print(f"callstream: WARNING: {warning}", file=sys.stderr, flush=True)
        log.warning("%s", warning)
    from pipeline.server.runner import run_server, supervise_workers, worker_env_check

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


def _check_ws_url(url: str) -> None:
    from urllib.parse import urlsplit

    hint = "give a websocket URL such as ws://127.0.0.1:8080/media (or wss://...)"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as exc:
        raise CliError(f"--url {url!r}: {exc}; {hint}", 2) from None
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise CliError(f"--url {url!r} is not a ws:// or wss:// URL; {hint}", 2)


def cmd_replay(args: argparse.Namespace) -> int:
    from pipeline.cli.replay import load_call_audio, replay_many

    _check_ws_url(args.url)
    if args.calls < 1:
        raise CliError(f"--calls {args.calls}: give 1 or more", 2)
    non_negative("--speed", args.speed)
    try:
        audio = load_call_audio(args.file, args.rate)
    except ValueError as exc:  # AudioFileError: names the file and what is wrong
        raise CliError(str(exc), 2) from None
    call_id = args.call_id or f"replay-{uuid.uuid4().hex[:8]}"
    mode = "unmixed" if len(audio.tracks) == 2 else "mixed"
    print(
        f"replaying {args.file} ({audio.duration_s:.1f} s, {mode}, {audio.rate} Hz) as {args.calls} call(s) to {args.url}"
    )
    from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

    progress = sys.stderr.isatty() or args.calls > 1
    try:
        ids = asyncio.run(
            replay_many(
                args.url,
                audio,
                call_id,
                args.calls,
                args.speed,
                progress=progress,
                token=args.token,
            )
        )
    except OSError as exc:
        raise CliError(f"cannot reach {args.url}: {exc}", 1) from None
    except ConnectionClosed as exc:
        code, reason = (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else (None, "")
        raise CliError(
            f"the server closed the stream (code {code}: {reason or 'no reason'})", 1
        ) from None
    except InvalidStatus as exc:
        raise CliError(
            f"{args.url} refused the websocket (HTTP {exc.response.status_code})", 1
        ) from None
    except WebSocketException as exc:
        raise CliError(f"the websocket to {args.url} failed: {exc}", 1) from None
    print("done:", ", ".join(ids) if len(ids) <= 5 else f"{len(ids)} calls ({ids[0]} ...)")
    return 0


def cmd_redact(args: argparse.Namespace) -> int:
    from pipeline.privacy.redaction import get_redactor

    redactor = get_redactor()
    lines = [args.text] if args.text is not None else (line.rstrip("\n") for line in sys.stdin)
    try:
        _redact_lines(redactor, lines, args.json)
    except UnicodeDecodeError:
        raise CliError("standard input is not UTF-8 text", 2) from None
    return 0


def _redact_lines(redactor, lines, as_json: bool) -> None:
    for line in lines:
        result = redactor.redact_safe(line)
        if as_json:
            print(
                json.dumps(
                    {
                        "text": result.text,
                        "entities": [
                            {
                                "type": e.type,
                                "start": e.start,
                                "end": e.end,
                                "score": round(e.score, 3),
                            }
                            for e in result.entities
                        ],
                    }
                )
            )
        else:
            print(result.text)


def cmd_demo(args: argparse.Namespace) -> int:
    """Everything the demo is given is checked here, before it starts anything."""
    from pipeline.cli.replay import load_call_audio, sample_call_path

    non_negative("--speed", args.speed)
    # The demo's replay is not ACS and has no ACS token: media auth is off (loopback only).
    # Its replayer is its own and on loopback: no message-rate limit (at --speed 0 it sends
    # far faster than ACS would, and the throttle's warning would only be about itself).
    # The port is chosen when the service starts.
    settings = checked_settings(
        host="127.0.0.1", port=0, data_dir=args.data_dir, media_auth="off", media_message_rate=0
    )
    check_data_dir(settings)
    from pipeline.analytics.rules import rules_problems
    from pipeline.consult.experts import expert_problems

    problems = _claim_problems(settings) + rules_problems(settings.categories_file)
    if problems := problems + expert_problems(settings):
        raise CliError(problems[0], 2)
    path = Path(args.file) if args.file is not None else None
    try:
        audio = load_call_audio(path or sample_call_path())
    except ValueError as exc:  # AudioFileError: names the file and what is wrong
        raise CliError(str(exc), 2) from None
    from pipeline.cli.demo import run_demo

    return asyncio.run(run_demo(args, settings, path, audio))


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage block): ``callstream replay: MESSAGE``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {one_line(message)} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="callstream", description="Real-time ACS call pipeline")
    p.add_argument("--version", action="version", version=f"callstream {version()}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the service")
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    s.add_argument("--data-dir", dest="data_dir")
    s.add_argument(
        "--config", help="TOML file of settings (keys as in the settings table, lower case)"
    )
    s.add_argument("--stt", choices=["local", "azure", "acs"])
    s.add_argument("--log-level", dest="log_level")
    s.add_argument(
        "--workers", type=int, default=1, metavar="N",
        help="worker processes sharing the port (SO_REUSEPORT); more than one needs CALLSTREAM_BUS=redis://...",
    )  # fmt: skip
    s.add_argument("--reuse-port", dest="reuse_port", action="store_true", help=argparse.SUPPRESS)
    s.set_defaults(func=cmd_serve)

    d = sub.add_parser(
        "demo", help="run the service on embedded defaults and replay the bundled sample call"
    )
    d.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="replay speed (1 = real time, 0 = as fast as possible)",
    )
    d.add_argument("--data-dir", dest="data_dir", default="./callstream-data")
    d.add_argument("--file", help="a WAV file to replay instead of the bundled sample")
    d.add_argument(
        "--keep",
        action="store_true",
        help="keep serving (and the console) after the replay, until Ctrl-C",
    )
    d.set_defaults(func=cmd_demo)

    r = sub.add_parser(
        "replay", help="stream a WAV file to a callstream (or ACS-compatible) /media websocket"
    )
    r.add_argument("file")
    r.add_argument("--url", required=True, help="e.g. ws://127.0.0.1:8080/media")
    r.add_argument("--call-id", dest="call_id")
    r.add_argument("--rate", type=int, choices=[16000, 24000])
    r.add_argument(
        "--speed", type=float, default=1.0, help="1 = real time; 0 = as fast as possible"
    )
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

    e = sub.add_parser(
        "export",
        help="write a call's redacted transcript (and its manifest), many calls, or a call's recording",
    )
    e.add_argument("call_id", nargs="?")
    e.add_argument("--format", default="jsonl", choices=["jsonl", "vtt", "txt", "csv"])
    e.add_argument("--out", help="a file (one call) or a folder (--since/--until)")
    e.add_argument("--since", help="bulk: calls that started at or after this ISO 8601 time")
    e.add_argument("--until", help="bulk: calls that started before this ISO 8601 time")
    e.add_argument(
        "--progress", action="store_true", help="show the progress bar even when not on a terminal"
    )
    e.add_argument(
        "--audio", action="store_true",
        help="the call's recording (CALLSTREAM_RECORDER=local): its files and recording.json into --out DIR",
    )  # fmt: skip
    e.add_argument("--data-dir", dest="data_dir")
    e.set_defaults(func=cmd_export)

    v = sub.add_parser(
        "verify", help="check an export against its manifest; names the event that broke the chain"
    )
    v.add_argument("path")
    v.set_defaults(func=cmd_verify)

    g = sub.add_parser(
        "purge", help="delete calls older than the retention period (legal holds are kept)"
    )
    g.add_argument("--days", type=float)
    g.add_argument("--data-dir", dest="data_dir")
    g.set_defaults(func=cmd_purge)
    return p


def _debug(args: argparse.Namespace | None) -> bool:
    level = getattr(args, "log_level", None) or os.environ.get("CALLSTREAM_LOG_LEVEL", "")
    return str(level).strip().upper() == "DEBUG"


def main(argv: list[str] | None = None) -> int:
    """Run one command. A user error is one line on stderr and exit 2 (usage, settings) or 1
    (the operation failed); never a traceback, unless CALLSTREAM_LOG_LEVEL=DEBUG asks for one."""
    args: argparse.Namespace | None = None
    command = "callstream"
    try:
        args = build_parser().parse_args(argv)
        command = f"callstream {args.command}" if args.command != "serve" else "callstream"
        if args.command in ("redact", "export", "replay", "verify", "purge"):
            logging.basicConfig(level="WARNING")
        return args.func(args) or 0
    except CliError as exc:
        print(f"{command}: {one_line(exc)}", file=sys.stderr)
        return exc.code
    except SettingsError as exc:
        print(f"{command}: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`callstream export ID | head`): nothing more to say. Point
        # stdout at /dev/null so the interpreter's own flush at exit does not complain.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except Exception as exc:
        if _debug(args):
            raise
        print(
            f"callstream: internal error: {type(exc).__name__}: {one_line(exc)} "
            "(run with CALLSTREAM_LOG_LEVEL=DEBUG for details)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
