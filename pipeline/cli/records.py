"""Commands on the compliance record: export (one call or many, or a call's recording),
verify, purge.

They read the store directly (no service running), so they work on a stopped
deployment's data directory or a PostgreSQL store, and fail with one line, never a
traceback, when there is no store or it will not open.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

from models.settings import Settings, mask_url
from pipeline.cli.common import CliError, checked_settings, non_negative, one_line


def _open_store(settings: Settings):
    """The configured store, for reading; CliError (exit 1) when there is none or it will not open."""
    from pipeline.compliance.stores import open_store

    url = settings.store_url
    shown = mask_url(url)
    if not url.startswith(("postgres://", "postgresql://")):
        if not Path(url).exists():
            raise CliError(f"no store at {url}", 1)
        if not Path(url).is_file():
            raise CliError(f"no store at {url} (it is a directory)", 1)
    try:
        return open_store(url)
    except Exception as exc:  # sqlite3 or psycopg: either way the store did not open
        raise CliError(f"cannot open the store at {shown}: {one_line(exc)}", 1) from None


def _export_bounds(args: argparse.Namespace) -> tuple[str | None, str | None]:
    from pipeline.compliance.export import ExportError, utc_bound

    try:
        since = utc_bound(args.since, "--since") if args.since is not None else None
        until = utc_bound(args.until, "--until") if args.until is not None else None
    except ExportError as exc:
        raise CliError(str(exc), 2) from None
    if since is not None and until is not None and since >= until:
        raise CliError(f"--since {args.since} is not before --until {args.until}", 2)
    return since, until


def cmd_export(args: argparse.Namespace) -> int:
    from pipeline.compliance.export import ExportError, export_lines
    from pipeline.compliance.manifest import write_export

    if getattr(args, "audio", False):
        return _audio_export(args)
    if (args.call_id is None) == (args.since is None and args.until is None):
        raise CliError("give a CALL_ID, or --since/--until with --out DIR", 2)
    since, until = _export_bounds(args)
    if args.call_id is None and not args.out:
        raise CliError("bulk export needs --out DIR", 2)
    settings = checked_settings(data_dir=args.data_dir)
    out = Path(args.out) if args.out else None
    if out is not None and args.call_id is not None:
        if out.is_dir():
            raise CliError(f"cannot write {out}: it is a directory (give a file name)", 1)
        if not out.parent.is_dir():
            raise CliError(f"cannot write {out}: no directory {out.parent}", 1)
    if out is not None and args.call_id is None and out.exists() and not out.is_dir():
        raise CliError(f"--out {out} is a file; bulk export writes into a directory", 1)
    store = _open_store(settings)
    try:
        if args.call_id is None:
            return _bulk_export(store, args, since, until)
        if store.get_call(args.call_id) is None:
            raise CliError(f"no stored call {args.call_id!r}", 1)
        try:
            lines = export_lines(store, args.call_id, args.format)
        except ExportError as exc:
            raise CliError(str(exc), 2) from None
        try:
            if out is not None:
                manifest = write_export(store, args.call_id, args.format, out, lines)
                side = f", {out}.analytics.csv" if args.format == "csv" else ""
                print(f"wrote {out} ({manifest['eventCount']} events, chain head {manifest['chainHead'][:16]}...)"
                      f"{side} and {out}.manifest.json", file=sys.stderr)  # fmt: skip
            else:
                for line in lines:
                    sys.stdout.buffer.write(line)
        except OSError as exc:
            if isinstance(exc, BrokenPipeError) or out is None:
                raise
            raise CliError(f"writing {out} failed: {exc.strerror or exc}", 1) from None
    finally:
        store.close()
    return 0


def _audio_export(args: argparse.Namespace) -> int:
    """`export CALL_ID --audio --out DIR`: the recording files and DIR/recording.json."""
    from pipeline.recorder.export import INDEX_NAME, RecordingExportError, export_audio

    if args.call_id is None or args.since is not None or args.until is not None:
        raise CliError(
            "--audio exports one call's recording: give a CALL_ID (no --since/--until)", 2
        )
    if not args.out:
        raise CliError("--audio needs --out DIR (a folder for the files and recording.json)", 2)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CliError(f"--out {out} is a file; --audio writes into a folder", 1)
    settings = checked_settings(data_dir=args.data_dir)
    store = _open_store(settings)
    try:
        if store.get_call(args.call_id) is None:
            raise CliError(f"no stored call {args.call_id!r}", 1)
        try:
            doc = export_audio(store, args.call_id, settings.data_dir, out)
        except RecordingExportError as exc:
            raise CliError(str(exc), 1) from None
        except OSError as exc:
            raise CliError(f"writing {out} failed: {exc.strerror or exc}", 1) from None
    finally:
        store.close()
    print(f"wrote {len(doc['files'])} recording file(s), {out / INDEX_NAME} ({len(doc['removedSpans'])} "
          f"span(s) removed) and {out / INDEX_NAME}.manifest.json", file=sys.stderr)  # fmt: skip
    return 0


def _bulk_export(store, args: argparse.Namespace, since: str | None, until: str | None) -> int:
    """Every call that started in [--since, --until) into --out DIR, one call at a time."""
    from tqdm import tqdm

    from pipeline.compliance.export import export_lines
    from pipeline.compliance.manifest import write_export
    from pipeline.compliance.private_files import private_dir

    out = Path(args.out)
    try:
        private_dir(out)
    except OSError as exc:
        raise CliError(f"cannot create {out}: {exc.strerror or exc}", 1) from None
    # ids only: memory stays flat
    calls = [r.call_id for r in store.calls_between(since, until)]
    taken: set[str] = set()  # file names used in this run, case-folded (macOS, Windows)
    for call_id in tqdm(
        calls, desc="export", unit="call", disable=not sys.stderr.isatty() and not args.progress
    ):
        target = out / f"{export_name(call_id, taken)}.{args.format}"
        try:
            write_export(
                store, call_id, args.format, target, export_lines(store, call_id, args.format)
            )
        except OSError as exc:
            raise CliError(f"writing {target} failed: {exc.strerror or exc}", 1) from None
    print(f"exported {len(calls)} calls to {out}", file=sys.stderr)
    return 0


def export_name(call_id: str, taken: set[str]) -> str:
    """A file name for a call's export that no other call of the run can share.

    A call id made only of letters, digits, `-`, `_` and `.` (up to 200) is its own name.
    Any other is made safe and given a hash of the whole id, since "a/b" and "a_b" (or
    two long ids with one prefix) would otherwise write the same file; and a name already
    taken in this run gets a counter rather than overwriting the first call's export."""
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "_" for c in call_id)
    name = safe[:200]
    if name != call_id or name.strip(".") == "":
        digest = hashlib.blake2b(call_id.encode(), digest_size=6).hexdigest()
        name = f"{safe[:180]}-{digest}"
    unique, n = name, 1
    while unique.casefold() in taken:
        n += 1
        unique = f"{name}-{n}"
    taken.add(unique.casefold())
    return unique


def cmd_verify(args: argparse.Namespace) -> int:
    from pipeline.compliance.manifest import ManifestError, verify_export

    try:
        problems = verify_export(args.path)
    except ManifestError as exc:
        raise CliError(str(exc), 1) from None
    if problems:
        for p in problems:
            print(f"FAILED: {p}")
        return 1
    print(f"OK: {args.path} matches its manifest")
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    from pipeline.compliance.retention import purge_now

    non_negative("--days", args.days)
    settings = checked_settings(data_dir=args.data_dir)
    days = args.days if args.days is not None else settings.retention_days
    if days is None:
        raise CliError("set --days or CALLSTREAM_RETENTION_DAYS", 2)
    store = _open_store(settings)
    try:
        purged = purge_now(store, days, actor="cli", data_dir=settings.data_dir)
    finally:
        store.close()
    print(f"purged {len(purged)} calls older than {days:g} days (calls on legal hold are kept)")
    return 0
