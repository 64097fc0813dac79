"""Service settings: environment variables, `serve` options and config-file keys.

One table (`FIELDS`) names every setting once; the environment name is
`CALLSTREAM_` + the upper-cased field (a few keep their vendors' names, such as
`OPENAI_API_KEY`), a config file (TOML) uses the field name, and `serve --opt`
overrides both. Precedence: command line > environment > config file > default.
"""

from __future__ import annotations

import math
import re
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

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
    stt: Literal["local", "azure", "acs"] = "local"
    acs_endpoint: str | None = None
    acs_key: str | None = None
    acs_connection_string: str | None = None
    public_url: str | None = None
    recording: Literal["on", "off"] | None = None  # on by default when ACS is configured
    speech_key: str | None = None
    speech_region: str | None = None
    speech_endpoint: str | None = None
    translate_to: str = ""
    translator: Literal["azure", "openai", "off"] = "off"
    sentiment: Literal["local", "openai"] = "local"
    openai_api_key: str | None = None
    openai_base_url: str | None = None
    azure_openai_endpoint: str | None = None
    azure_openai_api_key: str | None = None
    llm_model: str = "gpt-4o-mini"
    # memory | redis://... | rediss://... | unix://... (checked in load_settings)
    bus: str = "memory"
    # SQLite in data_dir by default, a SQLite file path, or postgresql://...
    store: str | None = None
    media_auth: Literal["acs-jwt", "off"] | None = None  # unset: acs-jwt when ACS is configured
    acs_jwks_url: str = "https://acscallautomation.communication.azure.com/calling/keys"
    acs_audience: str | None = None
    api_tokens: str = ""
    insecure: bool = False
    callback_secret: str | None = None
    api_jwt_issuer: str | None = None  # API JWTs: accepted from this issuer (with the two below)
    api_jwt_audience: str | None = None
    api_jwks_url: str | None = None
    # Roles: a TOML file of [[token]] tables (token or token_sha256, role, name, participants).
    access_file: str | None = None
    metrics_token: str | None = None  # GET /metrics needs exactly this bearer token
    # Keys the pseudonym (4:~...) a customer's phone number is published as; unset: one is
    # generated into the data dir at first start (replicas must share it: set it).
    pseudonym_key: str | None = None
    # Event Grid deliveries (IncomingCall) with Microsoft Entra authentication: besides the
    # URL secret, a bearer JWT from this issuer, for this audience, signed by a key here.
    eventgrid_jwt_issuer: str | None = None
    eventgrid_jwt_audience: str | None = None
    eventgrid_jwks_url: str | None = None
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
    # Participant roles by raw-id prefix (comma-separated). An anonymous Teams guest
    # (`8:teamsvisitor:`) is not staff: a customer, whose audio a payment window withholds.
    agent_prefixes: str = "8:acs:,8:orgid:"
    customer_prefixes: str = "4:,8:teamsvisitor:"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"  # any case
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
    # callstream's own recording from the media stream (pipeline/recorder): off | local.
    recorder: Literal["off", "local"] = "off"
    # Audio held in memory before it is written: it must cover a payment window's reach
    # back, from the start of the utterance that held the card (or the intent) to the
    # trigger: an utterance is at most 15 s (vad_max_utterance_ms), plus the recognizer's
    # latency (README, "Card payments (PCI)"). The local engine's own backlog is covered
    # apart: audio waits for its finals.
    recorder_delay_s: float = 20.0
    # Call analytics and alerts (pipeline/analytics): an `analytics` event this often while
    # a call is live; category rules from this TOML file (unset: the shipped default set).
    analytics_interval_s: float = 15.0
    categories_file: str | None = None
    # Teams experts an agent may ask into a call: "Name=<Entra object id>", comma-separated.
    experts: str = ""
    media_idle_timeout_s: float = 60.0  # close a media socket that sends nothing for this long
    # A dropped media socket: wait this long for ACS to reconnect.
    media_reconnect_grace_s: float = 10.0
    # A websocket sending more than this many messages a second (one more per KiB) is read
    # more slowly, not closed: ACS sends 50 a second per participant. 0: no limit.
    media_message_rate: float = 2000.0
    http_header_timeout_s: float = 10.0  # a connection must send its request headers within this
    drain_grace_s: float = 60.0  # on SIGTERM: how long calls in progress may go on
    store_buffer_events: int = 50_000  # events kept in memory while the store is away
    # The [[token]] tables of a `serve --config` file (the access file's format); config only.
    token: list[dict[str, Any]] = msgspec.field(default_factory=list)

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


CONFIG_ONLY = ("token",)  # keys a config file may hold that are not settings of their own
FIELDS: tuple[str, ...] = tuple(f for f in Settings.__struct_fields__ if f not in CONFIG_ONLY)


def env_name(field: str) -> str:
    return _VENDOR_NAMES.get(field, "CALLSTREAM_" + field.upper())


class SettingsError(ValueError):
    """A setting has a value of the wrong kind; the message names the setting."""


_HINTS: dict[str, Any] = typing.get_type_hints(Settings)
_LOG_LEVEL_ALIASES = {"WARN": "WARNING", "FATAL": "CRITICAL"}
_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}
# Bounds of numeric settings (inclusive); every other number must be finite and >= 0.
_BOUNDS: dict[str, tuple[float, float | None]] = {
    "port": (0, 65535),
    "vad_aggressiveness": (0, 3),
    "subscriber_queue": (1, None),
    "sentiment_batch_max": (1, None),
    "recorder_delay_s": (1, 600),  # 1 s at least: a delay line of nothing cuts nothing late
    "analytics_interval_s": (0.05, 3600),
}
BUS_SCHEMES = ("redis", "rediss", "unix")
STORE_SCHEMES = ("postgresql", "postgres")


def _choices(hint: Any) -> tuple[tuple[str, ...], bool]:
    """The values of a ``Literal[...]`` (or ``Literal[...] | None``) type, and whether None is allowed."""
    if typing.get_origin(hint) is Literal:
        return tuple(typing.get_args(hint)), False
    args = typing.get_args(hint)
    if type(None) in args:
        literals = [a for a in args if typing.get_origin(a) is Literal]
        if len(literals) == 1:
            return tuple(typing.get_args(literals[0])), True
    return (), False


_URL_PASSWORD = re.compile(r"(://[^/\s:@]*:)[^\s/]*@")


def mask_url(text: str) -> str:
    """``text`` with the password of any URL in it (``scheme://user:PASSWORD@host``) as ***."""
    return _URL_PASSWORD.sub(r"\1***@", text)


def _masked(value: Any) -> str:
    """``repr`` of a value for an error message, with any password in a URL replaced by ***."""
    return mask_url(repr(value)) if isinstance(value, str) else repr(value)


def _convert(field: str, value: Any, source: str) -> Any:
    """One setting's value as its type; a SettingsError naming ``source`` when it is not."""
    hint = _HINTS[field]
    shown = f"{source}={_masked(value)}"
    choices, optional = _choices(hint)
    if choices:
        if value is None and optional:
            return None
        if isinstance(value, str):
            text = value.strip()
            if text == "" and optional:
                return None
            if field == "log_level":
                text = _LOG_LEVEL_ALIASES.get(text.upper(), text.upper())
            else:
                text = text.lower()
            if text in choices:
                return text
        listed = (
            ", ".join(c.lower() for c in choices) if field == "log_level" else ", ".join(choices)
        )
        case = " (any case)" if field == "log_level" else ""
        raise SettingsError(f"{shown} is not one of: {listed}{case}")
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise SettingsError(f"{shown} is not true or false (1/0, yes/no and on/off also do)")
    numeric = hint in (int, float, float | None, int | None)
    try:
        converted = msgspec.convert(
            value.strip() if numeric and isinstance(value, str) else value, hint, strict=False
        )
    except msgspec.ValidationError:
        if hint in (int, int | None):
            raise SettingsError(f"{shown} is not a whole number") from None
        if numeric:
            raise SettingsError(f"{shown} is not a number") from None
        raise SettingsError(f"{shown} is not text") from None
    if isinstance(converted, (int, float)) and not isinstance(converted, bool):
        low, high = _BOUNDS.get(field, (0, None))
        if not math.isfinite(converted):
            raise SettingsError(f"{shown} is not a finite number")
        if converted < low:
            raise SettingsError(f"{shown} must be at least {low}")
        if high is not None and converted > high:
            raise SettingsError(f"{shown} must be at most {high}")
    if field == "bus":
        return _check_bus(converted, shown)
    if field == "store":
        return _check_store(converted, shown)
    return converted


def _scheme(url: str) -> str:
    return url.split("://", 1)[0] if "://" in url else ""


def _check_bus(value: str, shown: str) -> str:
    text = value.strip()
    if text.lower() == "memory":
        return "memory"
    allowed = ", ".join(f"{s}://" for s in BUS_SCHEMES)
    if _scheme(text) not in BUS_SCHEMES:
        raise SettingsError(f"{shown} is not memory or a Redis URL ({allowed})")
    try:
        urlsplit(text).port  # noqa: B018 - raises on a port that is not a number
    except ValueError as exc:
        raise SettingsError(f"{shown} is not a valid Redis URL ({exc})") from None
    return text


def _check_store(value: str | None, shown: str) -> str | None:
    text = (value or "").strip()
    if not text:
        return None
    if "://" in text:
        if _scheme(text) not in STORE_SCHEMES:
            raise SettingsError(
                f"{shown} is not a SQLite file path or a postgresql:// (postgres://) URL"
            )
        try:
            urlsplit(text).port  # noqa: B018
        except ValueError as exc:
            raise SettingsError(f"{shown} is not a valid PostgreSQL URL ({exc})") from None
    return text


def _read_config(config_file: str | Path) -> dict[str, Any]:
    try:
        with open(config_file, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise SettingsError(f"config file {config_file}: no such file") from None
    except IsADirectoryError:
        raise SettingsError(f"config file {config_file}: is a directory") from None
    except OSError as exc:
        raise SettingsError(
            f"config file {config_file}: cannot read it ({exc.strerror or exc})"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config file {config_file}: not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise SettingsError(f"config file {config_file}: not valid TOML: not UTF-8 text") from None
    unknown = set(data) - set(FIELDS) - set(CONFIG_ONLY)
    if unknown:
        raise SettingsError(f"unknown setting(s) in {config_file}: {', '.join(sorted(unknown))}")
    return data


def option_name(field: str) -> str:
    """How an override is named in messages: the `serve` option of the same name."""
    return "--" + field.replace("_", "-")


def load_settings(
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    config_file: str | Path | None = None,
) -> Settings:
    """Merge defaults, an optional TOML file, the environment and explicit overrides.

    Every value is checked as it is loaded: a SettingsError (one line) names where the bad
    value came from (the environment variable, ``FILE: key`` or the ``--option``) and, for
    enumerated settings, the values allowed. Enumerations are case-insensitive.
    """
    import os

    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    tokens: Any = []
    if config_file:
        data = _read_config(config_file)
        tokens = data.pop("token", [])
        if not isinstance(tokens, list) or not all(isinstance(t, dict) for t in tokens):
            raise SettingsError(f"{config_file}: token must be [[token]] tables")
        for key, value in data.items():
            values[key], sources[key] = value, f"{config_file}: {key}"
    for field in FIELDS:
        name = env_name(field)
        if name in environ and environ[name] != "":
            values[field], sources[field] = environ[name], name
    for key, value in (overrides or {}).items():
        if key not in _HINTS:
            raise SettingsError(f"unknown setting {key!r}")
        if value is not None:
            values[key], sources[key] = value, option_name(key)
    checked = {field: _convert(field, value, sources[field]) for field, value in values.items()}
    try:
        return msgspec.convert({**checked, "token": tokens}, Settings, strict=False)
    except msgspec.ValidationError as exc:  # not expected: every field was checked above
        raise SettingsError(f"invalid setting: {exc}") from None
