"""Every user error is one line on stderr and a non-zero exit code, never a traceback.

Each bad input goes through the real command line (a subprocess of ``python -m
pipeline.cli.commands`` in a scratch directory, with no ``CALLSTREAM_*`` variables from outside):
exit 2 for usage and settings, 1 for an operation that failed. The `serve` cases must
stop before they bind (each has a free port and a timeout, so a mistake fails the test
rather than hanging it). The settings messages are also checked in-process, and so is the
last-resort guard in ``main``.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import wave
from pathlib import Path

import pytest

from models.settings import SettingsError, load_settings
from pipeline.cli import commands as cli

from .conftest import run_cli

TIMEOUT = 90  # seconds; every case ends in about one (a serve that starts would hang)
WS = "ws://127.0.0.1:{port}/media"
# Outside settings that would change what a case does: removed from the child's environment.
_FOREIGN = ("CALLSTREAM_", "OPENAI_", "AZURE_OPENAI_")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_FOREIGN)}
    env["PYTHONUNBUFFERED"] = "1"
    return {**env, **extra}


def write_wav(path: Path, width: int = 2, seconds: float = 0.2) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(width), w.setframerate(16000)
        w.writeframes(b"\x10" * width * int(16000 * seconds))


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """The files the cases name, in the directory they run in."""
    (tmp_path / "notwav.txt").write_text("hello, this is not audio\n" * 20)
    (tmp_path / "short.txt").write_text("hello\n")
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "adir.wav").mkdir()
    write_wav(tmp_path / "good.wav")
    write_wav(tmp_path / "eightbit.wav", width=1)
    (tmp_path / "bad.toml").write_text("port = 8080\nstt = acs\n")  # acs is not quoted
    (tmp_path / "unknown.toml").write_text('stt = "acs"\nsst = "acs"\n')
    (tmp_path / "badvalue.toml").write_text('stt = "nonsense"\n')
    (tmp_path / "export.jsonl").write_text('{"seq": 1}\n')
    (tmp_path / "notjson.jsonl").write_text('{"seq": 1}\n')
    (tmp_path / "notjson.jsonl.manifest.json").write_text("{not json")
    (tmp_path / "list.jsonl").write_text('{"seq": 1}\n')
    (tmp_path / "list.jsonl.manifest.json").write_text("[1, 2]")
    (tmp_path / "shape.jsonl").write_text('{"seq": 1}\n')
    (tmp_path / "shape.jsonl.manifest.json").write_text(
        '{"format": "jsonl", "callId": "x", "links": "abc"}'
    )
    (tmp_path / "gone.txt.manifest.json").write_text('{"format": "txt", "exportSha256": "00"}')
    (tmp_path / "junkstore").mkdir()
    (tmp_path / "junkstore" / "callstream.db").write_text("this is not a database\n" * 50)
    (tmp_path / "afile").write_text("a file where a directory belongs\n")
    return tmp_path


def run(cwd: Path, argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_cli(*argv, cwd=cwd, env=env, timeout=TIMEOUT)


def assert_one_line(done: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    """Exactly one non-empty line on stderr, no traceback anywhere, the exact exit code."""
    said = f"exit {done.returncode}\nstderr:\n{done.stderr}\nstdout:\n{done.stdout}"
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout, said
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, said
    assert done.returncode == code, said
    for needle in needles:
        assert needle in lines[0], said
    return lines[0]


# (id, argv, environment, exit code, text the one line must hold). "{port}" is a free port
# (nothing listens on it); a serve case is also given it as CALLSTREAM_PORT.
# fmt: off
CASES: list[tuple[str, list[str], dict[str, str], int, list[str]]] = [
    # replay: the file
    ("replay-not-wav", ["replay", "notwav.txt", "--url", WS], {}, 2, ["notwav.txt", "not a WAV file"]),
    ("replay-too-short", ["replay", "short.txt", "--url", WS], {}, 2, ["short.txt", "not a WAV file"]),
    ("replay-empty", ["replay", "empty.wav", "--url", WS], {}, 2, ["empty.wav", "empty"]),
    ("replay-missing", ["replay", "missing.wav", "--url", WS], {}, 2, ["missing.wav", "no such file"]),
    ("replay-directory", ["replay", "adir.wav", "--url", WS], {}, 2, ["adir.wav", "directory"]),
    ("replay-8-bit", ["replay", "eightbit.wav", "--url", WS], {}, 2, ["eightbit.wav", "16-bit"]),
    # replay: the options
    ("replay-http-url", ["replay", "good.wav", "--url", "http://127.0.0.1:{port}/media"], {}, 2, ["--url", "ws://"]),
    ("replay-no-host", ["replay", "good.wav", "--url", "ws:///media"], {}, 2, ["--url"]),
    ("replay-bad-port", ["replay", "good.wav", "--url", "ws://127.0.0.1:abc/media"], {}, 2, ["--url"]),
    ("replay-calls-0", ["replay", "good.wav", "--url", WS, "--calls", "0"], {}, 2, ["--calls 0"]),
    ("replay-calls-text", ["replay", "good.wav", "--url", WS, "--calls", "two"], {}, 2, ["--calls", "'two'"]),
    ("replay-speed-negative", ["replay", "good.wav", "--url", WS, "--speed", "-1"], {}, 2, ["--speed -1"]),
    ("replay-speed-nan", ["replay", "good.wav", "--url", WS, "--speed", "nan"], {}, 2, ["--speed"]),
    ("replay-rate", ["replay", "good.wav", "--url", WS, "--rate", "8000"], {}, 2, ["--rate"]),
    ("replay-no-url", ["replay", "good.wav"], {}, 2, ["--url"]),
    # replay: nothing listens there (the operation fails)
    ("replay-unreachable", ["replay", "good.wav", "--url", WS, "--speed", "0"], {}, 1, ["cannot reach"]),
    # serve: the config file
    ("serve-bad-toml", ["serve", "--config", "bad.toml"], {}, 2, ["bad.toml", "TOML", "line 2"]),
    ("serve-missing-config", ["serve", "--config", "missing.toml"], {}, 2, ["missing.toml", "no such file"]),
    ("serve-unknown-key", ["serve", "--config", "unknown.toml"], {}, 2, ["unknown.toml", "sst"]),
    ("serve-bad-key-value", ["serve", "--config", "badvalue.toml"], {}, 2, ["badvalue.toml: stt", "local, azure, acs"]),
    # serve: settings from the environment
    ("serve-stt", ["serve"], {"CALLSTREAM_STT": "nonsense"}, 2, ["CALLSTREAM_STT='nonsense' is not one of: local, azure, acs"]),
    ("serve-bus", ["serve"], {"CALLSTREAM_BUS": "nonsense"}, 2, ["CALLSTREAM_BUS='nonsense'", "memory", "redis://"]),
    ("serve-bus-scheme", ["serve"], {"CALLSTREAM_BUS": "amqp://broker"}, 2, ["CALLSTREAM_BUS"]),
    ("serve-log-level", ["serve"], {"CALLSTREAM_LOG_LEVEL": "LOUD"}, 2, ["CALLSTREAM_LOG_LEVEL='LOUD'", "debug, info"]),
    ("serve-log-format", ["serve"], {"CALLSTREAM_LOG_FORMAT": "xml"}, 2, ["CALLSTREAM_LOG_FORMAT", "json, text"]),
    ("serve-sentiment", ["serve"], {"CALLSTREAM_SENTIMENT": "nonsense"}, 2, ["CALLSTREAM_SENTIMENT", "local, openai"]),
    ("serve-translator", ["serve"], {"CALLSTREAM_TRANSLATOR": "nonsense"}, 2, ["CALLSTREAM_TRANSLATOR", "azure, openai, off"]),
    ("serve-media-auth", ["serve"], {"CALLSTREAM_MEDIA_AUTH": "nonsense"}, 2, ["CALLSTREAM_MEDIA_AUTH", "acs-jwt, off"]),
    ("serve-recording", ["serve"], {"CALLSTREAM_RECORDING": "maybe"}, 2, ["CALLSTREAM_RECORDING='maybe'", "on, off"]),
    ("serve-store", ["serve"], {"CALLSTREAM_STORE": "mysql://x"}, 2, ["CALLSTREAM_STORE='mysql://x'", "postgresql://"]),
    ("serve-store-password", ["serve"], {"CALLSTREAM_STORE": "mysql://ann:s3cret@db/x"}, 2, ["mysql://ann:***@db/x"]),
    ("serve-port-text", ["serve"], {"CALLSTREAM_PORT": "abc"}, 2, ["CALLSTREAM_PORT='abc'", "whole number"]),
    ("serve-port-range", ["serve"], {"CALLSTREAM_PORT": "70000"}, 2, ["CALLSTREAM_PORT", "65535"]),
    ("serve-insecure", ["serve"], {"CALLSTREAM_INSECURE": "maybe"}, 2, ["CALLSTREAM_INSECURE"]),
    ("serve-azure-no-region", ["serve"], {"CALLSTREAM_STT": "azure"}, 2, ["CALLSTREAM_SPEECH_REGION"]),
    ("serve-azure-no-key", ["serve"], {"CALLSTREAM_STT": "azure", "CALLSTREAM_SPEECH_REGION": "westeurope"}, 2, ["CALLSTREAM_SPEECH_KEY"]),
    ("serve-float", ["serve"], {"CALLSTREAM_DRAIN_GRACE_S": "soon"}, 2, ["CALLSTREAM_DRAIN_GRACE_S", "number"]),
    ("serve-negative", ["serve"], {"CALLSTREAM_RETENTION_DAYS": "-1"}, 2, ["CALLSTREAM_RETENTION_DAYS"]),
    ("serve-vad", ["serve"], {"CALLSTREAM_VAD_AGGRESSIVENESS": "7"}, 2, ["CALLSTREAM_VAD_AGGRESSIVENESS", "at most 3"]),
    # serve: options
    ("serve-log-level-option", ["serve", "--log-level", "loud"], {}, 2, ["--log-level"]),
    ("serve-port-option", ["serve", "--port", "70000"], {}, 2, ["--port", "65535"]),
    ("serve-port-option-text", ["serve", "--port", "http"], {}, 2, ["--port"]),
    ("serve-workers-0", ["serve", "--workers", "0"], {}, 2, ["--workers 0"]),
    ("serve-stt-option", ["serve", "--stt", "nonsense"], {}, 2, ["--stt"]),
    ("serve-data-dir-file", ["serve", "--data-dir", "afile"], {}, 2, ["afile", "not a directory"]),
    # demo: checked before it starts anything
    ("demo-missing-file", ["demo", "--file", "missing.wav"], {}, 2, ["missing.wav", "no such file"]),
    ("demo-not-wav", ["demo", "--file", "notwav.txt"], {}, 2, ["notwav.txt", "not a WAV file"]),
    ("demo-empty", ["demo", "--file", "empty.wav"], {}, 2, ["empty.wav"]),
    ("demo-speed", ["demo", "--speed", "-1"], {}, 2, ["--speed"]),
    ("demo-bus", ["demo"], {"CALLSTREAM_BUS": "nonsense"}, 2, ["CALLSTREAM_BUS='nonsense'"]),
    ("demo-stt", ["demo"], {"CALLSTREAM_STT": "nonsense"}, 2, ["CALLSTREAM_STT"]),
    ("demo-translator", ["demo"], {"CALLSTREAM_TRANSLATOR": "nonsense"}, 2, ["CALLSTREAM_TRANSLATOR"]),
    ("demo-data-dir-file", ["demo", "--data-dir", "afile"], {}, 2, ["afile"]),
    ("demo-categories", ["demo"], {"CALLSTREAM_CATEGORIES_FILE": "missing.toml"}, 2, ["CALLSTREAM_CATEGORIES_FILE", "no such file"]),
    ("demo-experts", ["demo"], {"CALLSTREAM_EXPERTS": "bob"}, 2, ["CALLSTREAM_EXPERTS"]),
    ("serve-experts", ["serve"], {"CALLSTREAM_EXPERTS": "Bob=not-a-guid"}, 2, ["CALLSTREAM_EXPERTS"]),
    # export
    ("export-out-missing-dir", ["export", "X", "--out", "/missing/dir/x.jsonl"], {}, 1, ["/missing/dir/x.jsonl", "no directory"]),
    ("export-out-is-dir", ["export", "X", "--out", "adir.wav"], {}, 1, ["adir.wav", "directory"]),
    ("export-bulk-out-is-file", ["export", "--since", "2026-11-01", "--out", "afile"], {}, 1, ["afile"]),
    ("export-port", ["export", "X"], {"CALLSTREAM_PORT": "abc"}, 2, ["CALLSTREAM_PORT"]),
    ("export-stt", ["export", "X"], {"CALLSTREAM_STT": "nonsense"}, 2, ["CALLSTREAM_STT"]),
    ("export-store", ["export", "X"], {"CALLSTREAM_STORE": "mysql://x"}, 2, ["CALLSTREAM_STORE"]),
    ("export-since", ["export", "--since", "yesterday", "--out", "d"], {}, 2, ["--since: 'yesterday' is not an ISO 8601 date/time"]),
    ("export-until", ["export", "--until", "notadate", "--out", "d"], {}, 2, ["--until: 'notadate' is not an ISO 8601 date/time"]),
    ("export-since-after-until", ["export", "--since", "2026-11-02", "--until", "2026-11-01T00:00:00Z", "--out", "d"], {}, 2, ["--since", "--until"]),
    ("export-bulk-no-out", ["export", "--since", "2026-11-01"], {}, 2, ["--out"]),
    ("export-nothing", ["export"], {}, 2, ["CALL_ID"]),
    ("export-both", ["export", "X", "--since", "2026-11-01"], {}, 2, ["CALL_ID"]),
    ("export-format", ["export", "X", "--format", "pdf"], {}, 2, ["--format"]),
    ("export-no-store", ["export", "X"], {}, 1, ["no store"]),
    ("export-no-store-dir", ["export", "X", "--data-dir", "nowhere"], {}, 1, ["no store", "nowhere"]),
    ("export-junk-store", ["export", "X", "--data-dir", "junkstore"], {}, 1, ["cannot open the store"]),
    # verify
    ("verify-no-manifest", ["verify", "export.jsonl"], {}, 1, ["no manifest", "export.jsonl.manifest.json"]),
    ("verify-not-json", ["verify", "notjson.jsonl"], {}, 1, ["notjson.jsonl.manifest.json", "not JSON"]),
    ("verify-not-object", ["verify", "list.jsonl"], {}, 1, ["list.jsonl.manifest.json", "not a manifest"]),
    ("verify-wrong-shape", ["verify", "shape.jsonl"], {}, 1, ["shape.jsonl.manifest.json", "not a manifest"]),
    ("verify-no-export", ["verify", "gone.txt"], {}, 1, ["gone.txt", "no export"]),
    # purge
    ("purge-negative-days", ["purge", "--days", "-3"], {}, 2, ["--days -3"]),
    ("purge-days-text", ["purge", "--days", "soon"], {}, 2, ["--days"]),
    ("purge-no-days", ["purge"], {}, 2, ["--days", "CALLSTREAM_RETENTION_DAYS"]),
    ("purge-retention", ["purge"], {"CALLSTREAM_RETENTION_DAYS": "a week"}, 2, ["CALLSTREAM_RETENTION_DAYS"]),
    ("purge-recording", ["purge", "--days", "1"], {"CALLSTREAM_RECORDING": "maybe"}, 2, ["CALLSTREAM_RECORDING"]),
    ("purge-store", ["purge", "--days", "1"], {"CALLSTREAM_STORE": "mysql://x"}, 2, ["CALLSTREAM_STORE"]),
    ("purge-no-store", ["purge", "--days", "1"], {}, 1, ["no store"]),
    # the command line itself
    ("no-command", [], {}, 2, ["command"]),
    ("unknown-command", ["serv"], {}, 2, ["serv"]),
    ("unknown-option", ["export", "X", "--outt", "x"], {}, 2, ["--outt"]),
]
# fmt: on


@pytest.mark.parametrize(
    ("argv", "env", "code", "needles"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_a_user_error_is_one_line_and_an_exit_code(
    scratch: Path, argv: list[str], env: dict[str, str], code: int, needles: list[str]
) -> None:
    port = free_port()
    argv = [a.format(port=port) for a in argv]
    extra = (
        {"CALLSTREAM_PORT": str(port), "CALLSTREAM_DATA_DIR": str(scratch / "data")}
        if argv[:1] == ["serve"]
        else {}
    )
    done = run(scratch, argv, clean_env(**{**extra, **env}))
    assert_one_line(done, code, *needles)


def test_the_outer_environment_does_not_leak_into_the_cases(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CALLSTREAM_STT", "nonsense")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-outer")
    env = clean_env()
    assert "CALLSTREAM_STT" not in env and "OPENAI_API_KEY" not in env


def test_version(scratch: Path) -> None:
    from importlib.metadata import version

    done = run(scratch, ["--version"], clean_env())
    assert done.returncode == 0 and done.stdout == f"callstream {version('callstream')}\n", done
    assert cli.version() == version("callstream")


def test_accepted_dates_and_days_still_work_on_an_empty_store(scratch: Path) -> None:
    from pipeline.compliance.store import SqliteEventStore

    data = scratch / "data"
    SqliteEventStore(data / "callstream.db").close()
    for since, until in (
        ("2026-11-01", None),
        ("2026-11-01T00:00:00Z", "2026-12-01T00:00:00+01:00"),
    ):
        argv = ["export", "--since", since, "--out", "bulk", "--data-dir", str(data)]
        done = run(scratch, [*argv, "--until", until] if until else argv, clean_env())
        assert done.returncode == 0 and "exported 0 calls" in done.stderr, done
    done = run(
        scratch,
        ["purge", "--days", "0", "--data-dir", str(data)],
        clean_env(CALLSTREAM_LOG_LEVEL="info"),
    )
    assert done.returncode == 0 and "purged 0 calls" in done.stdout, done
    done = run(scratch, ["export", "nope", "--data-dir", str(data)], clean_env())
    assert_one_line(done, 1, "no stored call 'nope'")


# ---------------------------------------------------------------- load_settings, in-process


# fmt: off
@pytest.mark.parametrize(("environ", "message"), [
    ({"CALLSTREAM_STT": "nonsense"}, "CALLSTREAM_STT='nonsense' is not one of: local, azure, acs"),
    ({"CALLSTREAM_BUS": "nonsense"}, "CALLSTREAM_BUS='nonsense' is not memory or a Redis URL (redis://, rediss://, unix://)"),
    ({"CALLSTREAM_LOG_LEVEL": "LOUD"}, "CALLSTREAM_LOG_LEVEL='LOUD' is not one of: debug, info, warning, error, critical (any case)"),
    ({"CALLSTREAM_SENTIMENT": "nonsense"}, "CALLSTREAM_SENTIMENT='nonsense' is not one of: local, openai"),
    ({"CALLSTREAM_TRANSLATOR": "nonsense"}, "CALLSTREAM_TRANSLATOR='nonsense' is not one of: azure, openai, off"),
    ({"CALLSTREAM_MEDIA_AUTH": "nonsense"}, "CALLSTREAM_MEDIA_AUTH='nonsense' is not one of: acs-jwt, off"),
    ({"CALLSTREAM_RECORDING": "maybe"}, "CALLSTREAM_RECORDING='maybe' is not one of: on, off"),
    ({"CALLSTREAM_STORE": "mysql://x"}, "CALLSTREAM_STORE='mysql://x' is not a SQLite file path or a postgresql:// (postgres://) URL"),
    ({"CALLSTREAM_STORE": "postgresql://u:pw@h:x/db"}, "CALLSTREAM_STORE='postgresql://u:***@h:x/db' is not a valid PostgreSQL URL"),
    ({"CALLSTREAM_BUS": "redis://:pw@h:x/0"}, "CALLSTREAM_BUS='redis://:***@h:x/0' is not a valid Redis URL"),
    ({"CALLSTREAM_PORT": "abc"}, "CALLSTREAM_PORT='abc' is not a whole number"),
    ({"CALLSTREAM_PORT": "-1"}, "CALLSTREAM_PORT='-1' must be at least 0"),
    ({"CALLSTREAM_LLM_TIMEOUT_S": "nan"}, "CALLSTREAM_LLM_TIMEOUT_S='nan' is not a finite number"),
    ({"CALLSTREAM_PAYMENT_WITHHOLD_AUDIO": "sometimes"}, "CALLSTREAM_PAYMENT_WITHHOLD_AUDIO='sometimes' is not true or false"),
    ({"OPENAI_API_KEY": "k", "CALLSTREAM_SUBSCRIBER_QUEUE": "0"}, "CALLSTREAM_SUBSCRIBER_QUEUE='0' must be at least 1"),
])
# fmt: on
def test_load_settings_names_the_variable_and_the_allowed_values(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(environ=environ)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_load_settings_names_the_config_key_and_the_option(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('stt = "azure"\nport = "eighty"\n')
    with pytest.raises(SettingsError, match=rf"^{re.escape(str(config))}: port='eighty' is not a whole number$"):
        load_settings(environ={}, config_file=config)
    config.write_text("stt = =\n")
    with pytest.raises(
        SettingsError, match=rf"^config file {re.escape(str(config))}: not valid TOML: .*line 1, column"
    ):
        load_settings(environ={}, config_file=config)
    with pytest.raises(SettingsError, match=r"^--stt='nonsense' is not one of: local, azure, acs$"):
        load_settings(environ={}, overrides={"stt": "nonsense"})
    # precedence is unchanged: the option wins over the environment, which wins over the file
    config.write_text('stt = "nonsense"\n')
    assert load_settings(environ={"CALLSTREAM_STT": "acs"}, config_file=config).stt == "acs"
    assert (
        load_settings(environ={"CALLSTREAM_STT": "nonsense"}, overrides={"stt": "azure"}).stt
        == "azure"
    )


def test_load_settings_accepts_the_documented_values() -> None:
    s = load_settings(
        environ={
            "CALLSTREAM_STT": "ACS", "CALLSTREAM_LOG_LEVEL": "info", "CALLSTREAM_MEDIA_AUTH": " Off ",
            "CALLSTREAM_RECORDING": "OFF", "CALLSTREAM_TRANSLATOR": "openai", "CALLSTREAM_SENTIMENT": "openai",
            "CALLSTREAM_BUS": "rediss://:pw@redis.example:6380/0", "CALLSTREAM_STORE": "/var/lib/callstream/shared.db",
            "CALLSTREAM_INSECURE": "1", "CALLSTREAM_PORT": " 8081 ", "CALLSTREAM_RETENTION_DAYS": "0",
            "CALLSTREAM_LOG_FORMAT": "text",
        }
    )  # fmt: skip
    assert (s.stt, s.log_level, s.media_auth, s.recording) == ("acs", "INFO", "off", "off")
    assert (s.translator, s.sentiment, s.log_format) == ("openai", "openai", "text")
    assert (s.bus, s.store, s.insecure, s.port, s.retention_days) == (
        "rediss://:pw@redis.example:6380/0", "/var/lib/callstream/shared.db", True, 8081, 0.0
    )  # fmt: skip
    assert load_settings(environ={"CALLSTREAM_BUS": "MEMORY"}).bus == "memory"
    for bus in ("memory", "redis://localhost:6379/0", "unix:///run/redis.sock"):
        assert load_settings(environ={"CALLSTREAM_BUS": bus}).bus == bus
    for store in (
        "postgresql://u@db:5432/calls",
        "postgres://db/calls",
        "callstream.db",
        "C:\\data\\calls.db",
    ):
        assert load_settings(environ={"CALLSTREAM_STORE": store}).store == store
    for level in ("debug", "Warning", "WARN", "error", "CRITICAL"):
        assert load_settings(environ={"CALLSTREAM_LOG_LEVEL": level}).log_level in (
            "DEBUG",
            "WARNING",
            "ERROR",
            "CRITICAL",
        )
    defaults = load_settings(environ={})
    assert (defaults.stt, defaults.media_auth, defaults.recording, defaults.store, defaults.bus) == (
        "local", None, None, None, "memory"
    )  # fmt: skip


# ---------------------------------------------------------------- main's last-resort guard


def _boom(args: object) -> int:
    raise RuntimeError("the unexpected\nhappened")


def test_an_unexpected_error_is_one_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CALLSTREAM_LOG_LEVEL", raising=False)
    monkeypatch.setattr(cli, "cmd_verify", _boom)
    assert cli.main(["verify", "x"]) == 1
    err = capsys.readouterr().err
    assert err == (
        "callstream: internal error: RuntimeError: the unexpected happened "
        "(run with CALLSTREAM_LOG_LEVEL=DEBUG for details)\n"
    )


def test_with_debug_the_unexpected_error_is_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLSTREAM_LOG_LEVEL", "debug")
    monkeypatch.setattr(cli, "cmd_verify", _boom)
    with pytest.raises(RuntimeError, match="the unexpected"):
        cli.main(["verify", "x"])


def test_ctrl_c_exits_130_quietly(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_verify", interrupted)
    assert cli.main(["verify", "x"]) == 130
    assert capsys.readouterr() == ("", "")
