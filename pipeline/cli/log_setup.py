"""Logging for every command: one handler on stderr, the scrubber and credential filter on it.

Its own module so that `demo` (run by the CLI) and the CLI's commands share it without
importing each other.
"""

from __future__ import annotations

import logging
import re

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\u2028\u2029]")


class OneLineFormatter(logging.Formatter):
    """One record, one line: a control character in a message (a call id from a query
    string with a newline in it) is written escaped, so nobody can forge a log line. A
    traceback (DEBUG) still follows on its own lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        return _CONTROL.sub(lambda m: repr(m.group())[1:-1], line)


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Root handler on stderr, then the scrubber (and the credential filter) on it.

    ``fmt="json"``: one JSON object per line with the call id (`serve`'s default, for log
    collectors); ``"text"``: one readable line per record (the demo and the other
    commands, which people read). Uvicorn's loggers propagate to this handler.
    """
    from pipeline.api.credential_filter import install_credential_filter
    from pipeline.privacy.log_scrubber import JsonFormatter, install_log_scrubber

    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(OneLineFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler])  # no-op if already configured
    if level.upper() != "DEBUG":
        # The Azure SDK logs every request and response to ACS (URL, headers) at INFO: four
        # lines per pause with no call id. Its warnings and errors still come through.
        logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(
            logging.WARNING
        )
    install_log_scrubber()
    install_credential_filter()  # tokens and the callback secret never reach a log line
