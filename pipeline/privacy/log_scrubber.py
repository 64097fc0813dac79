"""Second line of defence for the privacy boundary: mask card-like numbers in logs.

The Redactor is the real boundary (README, Architecture: invariant 1); this filter exists for
the day someone logs a raw value by mistake (an exception message quoting the input,
an f-string in a debug line, a third-party library interpolating its argument). It masks
every digit of

- card-like runs: 13-19 digits, optionally separated by single spaces or dashes, and
- any run of 9 or more consecutive digits (SSNs without dashes, account numbers, IBAN
  bodies, phone numbers),

replacing each digit with ``#`` so the shape (and so the kind of leak) stays visible,
and replaces any run of nine or more spoken number words ("four one one one ...", as a
speech recognizer writes them) with ``[spoken digits withheld]``.
False positives (13-digit millisecond timestamps, long ids) are the accepted price:
masking a harmless number costs a little debugging; leaking a PAN costs PCI scope.

The filter is attached to *handlers*, not loggers, because a logger's filters only see
records logged on that very logger, while a handler's filters see every record that
reaches it, including those propagated from any child logger (``pipeline.ingest.session``,
``uvicorn``, third-party libraries). Handlers added after ``install_log_scrubber`` are
not covered: call it after logging is configured (the CLI does so at start-up).

`JsonFormatter` writes one JSON object per line (what log collectors ingest without a
parsing rule) with the call id of the record: taken from ``extra={"callId": ...}`` or,
failing that, from `current_call_id`, which the media endpoint sets for its connection's
task (tasks started from there inherit it; threads do not, so code on other threads
passes ``extra``). It scrubs every text field it writes itself as well, so its output is
masked even on a handler the filter was never added to. It lives here, not in the CLI,
because the call-id context variable must be importable by the media path, and the
formatter and the filter share the one definition of what gets masked.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import traceback
from contextvars import ContextVar
from typing import Any

from pipeline.privacy.normalize import analysis_form

__all__ = ["JsonFormatter", "ScrubbingFilter", "current_call_id", "install_log_scrubber", "scrub"]

# The call whose work is running: set by the media endpoint for its connection's task.
current_call_id: ContextVar[str | None] = ContextVar("callstream_call_id", default=None)

# A digit not preceded/followed by a digit, then 12-18 more digits, each optionally
# preceded by one space or dash: "4111 1111 1111 1111", "4111-1111-1111-1111".
_CARD_LIKE = re.compile(r"(?<!\d)\d(?:[ -]?\d){12,18}(?!\d)")
_LONG_RUN = re.compile(r"\d{9,}")
_NUMBER_WORD = (
    r"(?:zero|oh|one|two|three|four|five|six|seven|eight|nine|double|triple|ten|eleven|twelve"
    r"|thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty"
    r"|fifty|sixty|seventy|eighty|ninety|hundred|\d+)"
)
_SPOKEN_RUN = re.compile(
    rf"(?i)\b{_NUMBER_WORD}(?:[\s,.\-]+(?:(?:um|uh|er|sorry)[\s,.\-]+)?{_NUMBER_WORD}\b){{8,}}"
)
SPOKEN_MASK = "[spoken digits withheld]"
_DIGIT = re.compile(r"\d")

_UNSCRUBBABLE = "[log record withheld: could not be scrubbed]"


def _mask(match: re.Match[str]) -> str:
    return _DIGIT.sub("#", match.group(0))


def scrub(text: str) -> str:
    """Return ``text`` with card-like and long digit runs masked digit by digit. A line
    that is not ASCII is read as the recognizers read text (`normalize.analysis_form`):
    a zero-width space between two digits, or a fullwidth digit, does not hide a card."""
    text = analysis_form(text)
    return _SPOKEN_RUN.sub(SPOKEN_MASK, _LONG_RUN.sub(_mask, _CARD_LIKE.sub(_mask, text)))


def _needs_scrub(text: str) -> bool:
    text = analysis_form(text)
    return bool(_CARD_LIKE.search(text) or _LONG_RUN.search(text) or _SPOKEN_RUN.search(text))


def _args_need_scrub(args: Any) -> bool:
    """True if any argument's text form holds a maskable number (ints included)."""
    if not args:
        return False
    if isinstance(args, dict):
        values: Any = args.values()
    elif isinstance(args, tuple | list):
        values = args
    else:
        values = (args,)
    return any(_needs_scrub(_safe_str(v)) for v in values)


def _safe_str(value: object) -> str:
    try:
        return str(value)
    except Exception:  # a broken __str__ must not break logging
        return f"<unprintable {type(value).__name__}>"


class ScrubbingFilter(logging.Filter):
    """Masks card-like and long digit runs in a record's message, args and traceback.

    Never drops a record and never raises. When something must be masked, the record
    is flattened: ``msg`` becomes the scrubbed, fully formatted message and ``args`` is
    emptied, so that no formatter or structured handler can re-read the raw arguments.
    Exception and stack text are rendered, scrubbed and stored in ``exc_text`` /
    ``stack_info``, and ``exc_info`` is dropped, because formatters (and JSON
    formatters especially) would otherwise re-render the raw exception from it.
    If scrubbing itself fails, the message is withheld (fail closed).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            self._scrub_message(record)
            self._scrub_exception(record)
        except Exception:
            record.msg = _UNSCRUBBABLE
            record.args = None
            record.exc_info = None
            record.exc_text = None
            record.stack_info = None
        return True

    @staticmethod
    def _scrub_message(record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:
            # Mismatched format args: logging would print an error with the raw args.
            message = f"{_safe_str(record.msg)} {_safe_str(record.args)}"
            record.msg, record.args = scrub(message), None
            return
        if _needs_scrub(message) or _args_need_scrub(record.args):
            record.msg = scrub(message)
            record.args = None

    @staticmethod
    def _scrub_exception(record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[0] is not None:
            text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            record.exc_text = scrub(text)
            # exc_info is dropped below; keep the class name for structured output.
            record.exc_type_name = record.exc_info[0].__name__
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)


def install_log_scrubber(logger: logging.Logger | None = None) -> ScrubbingFilter:
    """Add one ScrubbingFilter to every handler of ``logger`` (default: the root logger).

    Idempotent: handlers that already carry a ScrubbingFilter are left alone. For the
    root logger, Python's last-resort stderr handler (used when no handler is
    configured at all) is covered too, so an unconfigured process does not print raw
    numbers either. Returns the filter so callers can add it to handlers made later.
    """
    target = logger if logger is not None else logging.getLogger()
    scrubber = ScrubbingFilter()
    handlers = list(target.handlers)
    if target is logging.getLogger() and logging.lastResort is not None:
        handlers.append(logging.lastResort)
    for handler in handlers:
        if not any(isinstance(f, ScrubbingFilter) for f in handler.filters):
            handler.addFilter(scrubber)
    return scrubber


# A canonical UUID (as ACS call connection ids are) is an identifier, never card data: its
# last group can be twelve digits, which the digit-run rule would otherwise mask, and a
# masked call id cannot be correlated. Anything else in the call-id field is scrubbed.
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def _call_id_field(value: object) -> str:
    text = _safe_str(value)[:128]
    return text if _UUID.fullmatch(text) else scrub(text)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (UTC, ms), ``level``, ``logger``, ``message``,
    ``callId`` when known, and ``excType``/``exc`` (class name and scrubbed traceback)
    or ``stack`` when the record has them. Other ``extra`` fields are left out on purpose:
    only fields listed here can reach a log line.

    Standard library only: the format is a few fields, and a dependency
    (python-json-logger) would add nothing but another package to audit.
    """

    def format(self, record: logging.LogRecord) -> str:
        try:
            return json.dumps(self._fields(record), default=_safe_str)
        except Exception:  # fail closed: a line that says something was withheld, still JSON
            return json.dumps({"time": _iso(record.created), "level": record.levelname, "logger": record.name,
                               "message": _UNSCRUBBABLE})  # fmt: skip

    def _fields(self, record: logging.LogRecord) -> dict[str, Any]:
        try:
            message = record.getMessage()
        except Exception:
            message = f"{_safe_str(record.msg)} {_safe_str(record.args)}"
        doc: dict[str, Any] = {
            "time": _iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": scrub(message),
        }
        call_id = getattr(record, "callId", None) or current_call_id.get()
        if call_id:
            doc["callId"] = _call_id_field(call_id)
        exc_type = getattr(record, "exc_type_name", None)
        exc_text = record.exc_text
        if record.exc_info and record.exc_info[0] is not None:  # no ScrubbingFilter ran on it
            exc_type = record.exc_info[0].__name__
            exc_text = self.formatException(record.exc_info)
        if exc_type:
            doc["excType"] = scrub(_safe_str(exc_type))
        if exc_text:
            doc["exc"] = scrub(exc_text)
        if record.stack_info:
            doc["stack"] = scrub(record.stack_info)
        return doc


def _iso(created: float) -> str:
    return (
        dt.datetime.fromtimestamp(created, dt.UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )
