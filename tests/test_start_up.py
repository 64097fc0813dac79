"""What `serve` says when it starts: where it listens, where the console is, what it runs
on, and no secret (a password in a store or bus URL, tokens, keys, the callback secret)."""

from __future__ import annotations

from models.settings import load_settings
from pipeline.server.runner import where_and_how

SECRETS = {
    "CALLSTREAM_STORE": "postgresql://cs:pg-Secret-1@db.internal:5432/callstream",
    "CALLSTREAM_BUS": "redis://:redis-Secret-2@cache.internal:6379/0",
    "CALLSTREAM_API_TOKENS": "api-Secret-3,api-Secret-4",
    "CALLSTREAM_ACS_ENDPOINT": "https://contoso.communication.azure.com/",
    "CALLSTREAM_ACS_KEY": "YWNzLVNlY3JldC01",
    "CALLSTREAM_CALLBACK_SECRET": "cb-Secret-6",
    "CALLSTREAM_SPEECH_KEY": "speech-Secret-7",
    "OPENAI_API_KEY": "sk-Secret-8",
}


def test_the_start_up_lines_say_where_and_how_without_secrets() -> None:
    settings = load_settings(
        environ={**SECRETS, "CALLSTREAM_HOST": "0.0.0.0", "CALLSTREAM_PORT": "9090"}
    )
    text = "\n".join(where_and_how(settings))
    assert "listening on http://0.0.0.0:9090 (all interfaces)" in text
    assert "console http://0.0.0.0:9090/console" in text and "media ws://0.0.0.0:9090/media" in text
    assert (
        "token or JWT required" in text and "ACS https://contoso.communication.azure.com/" in text
    )
    for name, value in SECRETS.items():
        for part in value.split(","):
            if "Secret" in part or name.endswith("_KEY"):
                secret = part.split("@")[0].rsplit(":", 1)[-1] if "://" in part else part
                assert secret not in text, name
    assert "***@db.internal" in text and "***@cache.internal" in text


def test_serve_logs_its_address_when_it_starts(acs_server) -> None:
    logs = acs_server.logs()
    assert f"listening on http://127.0.0.1:{acs_server.port}" in logs
    assert f"console http://127.0.0.1:{acs_server.port}/console" in logs
    assert "settings: speech acs" in logs
