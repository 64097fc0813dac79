"""Credentials never reach a log line: a filter that masks tokens and secrets in URLs and
headers that a log record (uvicorn's access log, say) may carry. A second line of
defence: nothing in callstream logs a credential on purpose.
"""

from __future__ import annotations

import logging
import re

_CREDENTIAL_PARAM = re.compile(r"(?i)\b((?:access_token|token|secret)=)[^&\s\"'#]+")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9\-._~+/]{8,}=*")  # 8+: not "bearer token"


def mask_credentials(text: str) -> str:
    return _BEARER.sub(r"\1***", _CREDENTIAL_PARAM.sub(r"\1***", text))


class CredentialFilter(logging.Filter):
    """Masks ``?access_token=``, ``?token=``, ``?secret=`` values and bearer tokens in log lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True  # the scrubber deals with broken records
        masked = mask_credentials(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def install_credential_filter() -> None:
    """Add a CredentialFilter to every root handler (and the last-resort one)."""
    root = logging.getLogger()
    handlers = list(root.handlers)
    if logging.lastResort is not None:
        handlers.append(logging.lastResort)
    for handler in handlers:
        if not any(isinstance(f, CredentialFilter) for f in handler.filters):
            handler.addFilter(CredentialFilter())
