"""Service settings: environment variables, `serve` options and config-file keys.

One table (`FIELDS`) names every setting once; the environment name is
`CALLSTREAM_` + the upper-cased field (a few keep their vendors' names, such as
`OPENAI_API_KEY`), a config file (TOML) uses the field name, and `serve --opt`
overrides both. Precedence: command line > environment > config file > default.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec

_VENDOR_NAMES = {
    "openai_api_key": "OPENAI_API_KEY",
    "openai_base_url": "OPENAI_BASE_URL",
    "azure_openai_endpoint": "AZURE_OPENAI_ENDPOINT",
    "azure_openai_api_key": "AZURE_OPENAI_API_KEY",
}


class Settings(msgspec.Struct, kw_only=True):
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: str = "./callstream-data"
    stt: str = "local"  # local | azure | acs
    acs_endpoint: str | None = None
    acs_key: str | None = None
    acs_connection_string: str | None = None
    public_url: str | None = None
    recording: str | None = None  # on | off; on by default when ACS is configured
    speech_key: str | None = None
    speech_region: str | None = None
    speech_endpoint: str | None = None
    translate_to: str = ""
    translator: str = "off"  # azure | openai | off
    sentiment: str = "local"  # local | openai
    openai_api_key: str | None = None
    openai_base_url: str | None = None
    azure_openai_endpoint: str | None = None
    azure_openai_api_key: str | None = None
    llm_model: str = "gpt-4o-mini"
    bus: str = "memory"  # memory | redis://...
    store: str | None = None  # SQLite in data_dir by default, or postgresql://...
    media_auth: str | None = None  # acs-jwt | off
    acs_jwks_url: str = "https://acscallautomation.communication.azure.com/calling/keys"
    acs_audience: str | None = None
    api_tokens: str = ""
    insecure: bool = False
    callback_secret: str | None = None
    api_jwt_issuer: str | None = None  # API JWTs: accepted from this issuer (with the two below)
    api_jwt_audience: str | None = None
    api_jwks_url: str | None = None
    # Voice activity detection and segmentation.
    vad_aggressiveness: int = 2
    vad_preroll_ms: int = 300
    vad_hangover_ms: int = 400
    vad_max_utterance_ms: int = 15000
    vad_min_utterance_ms: int = 200
    # Speech workers and the event stream.
    stt_workers: int = 0  # 0 = one per core
    stt_partial_interval_ms: int = 300
    language: str = "en-US"
    subscriber_queue: int = 256
    # Participant roles by raw-id prefix (comma-separated).
    agent_prefixes: str = "8:acs:,8:orgid:,8:teamsvisitor:"
    customer_prefixes: str = "4:"
    log_level: str = "INFO"
    # `serve` writes one JSON object per line (log collectors), `text` is for people; the
    # demo and the other commands always write text.
    log_format: Literal["json", "text"] = "json"
    # Payment guard (PCI). Phrase lists are "|"-separated and matched, case-insensitively
    # and on word boundaries, in either participant's partial and final transcripts.
    payment_intent_phrases: str = (
        "card number|long number|number on the front|take a payment|take the payment|"
        "take your payment|take payment|make a payment|pay by card|card details|"
        "expiry date|expiration date|security code|cvv"
    )
    payment_closing_phrases: str = (
        "payment has gone through|payment went through|payment is complete|payment is completed|"
        "payment was successful|payment is approved|transaction approved|transaction is approved|"
        "transaction is complete"
    )
    retention_days: float | None = None  # purge calls that ended longer ago (unset: keep)
    retention_interval_s: float = 3600.0  # how often the service purges
    llm_timeout_s: float = 5.0  # one request to the model; then the fallback
    sentiment_batch_ms: int = 200  # model sentiment: wait this long to batch finals ...
    sentiment_batch_max: int = 8  # ... or until this many are waiting
    payment_quiet_s: float = 20.0  # close after this long without a digit (spoken or keyed)
    payment_max_s: float = 180.0  # the longest a window stays open
    payment_withhold_audio: bool = True  # keep the customer's audio from remote speech engines
    recording_attempt_timeout_s: float = 1.0  # per pause/resume request to ACS
    media_idle_timeout_s: float = 60.0  # close a media socket that sends nothing for this long
    media_reconnect_grace_s: float = 10.0  # a dropped media socket: wait this long for ACS to reconnect
    # A websocket sending more than this many messages a second (one more per KiB) is read
    # more slowly, not closed: ACS sends 50 a second per participant. 0: no limit.
    media_message_rate: float = 2000.0
    http_header_timeout_s: float = 10.0  # a connection must send its request headers within this
    drain_grace_s: float = 60.0  # on SIGTERM: how long calls in progress may go on
    store_buffer_events: int = 50_000  # events kept in memory while the store is away

    @property
    def store_url(self) -> str:
        return self.store or str(Path(self.data_dir) / "callstream.db")

    @property
    def acs_configured(self) -> bool:
        return bool(self.acs_connection_string or (self.acs_endpoint and self.acs_key))

    @property
    def stt_worker_count(self) -> int:
        import os

        return self.stt_workers or max(1, os.cpu_count() or 1)


FIELDS: tuple[str, ...] = tuple(Settings.__struct_fields__)


def env_name(field: str) -> str:
    return _VENDOR_NAMES.get(field, "CALLSTREAM_" + field.upper())


class SettingsError(ValueError):
    """A setting has a value of the wrong kind; the message names the setting."""


def load_settings(
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    config_file: str | Path | None = None,
) -> Settings:
    """Merge defaults, an optional TOML file, the environment and explicit overrides."""
    import os

    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    if config_file:
        with open(config_file, "rb") as fh:
            data = tomllib.load(fh)
        unknown = set(data) - set(FIELDS)
        if unknown:
            raise SettingsError(f"unknown setting(s) in {config_file}: {', '.join(sorted(unknown))}")
        values.update(data)
    for field in FIELDS:
        name = env_name(field)
        if name in environ and environ[name] != "":
            values[field] = environ[name]
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = value
    try:
        return msgspec.convert(values, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise SettingsError(f"invalid setting: {exc}") from None
