"""What every command shares: its one-line error, and settings checked at start."""

from __future__ import annotations

import math
import re
from pathlib import Path

from models.settings import Settings, SettingsError, load_settings, mask_url


class CliError(Exception):
    """A user error or a failed operation: ``main`` prints ``callstream COMMAND: MESSAGE``
    (one line) on stderr and exits with ``code`` (2: usage or settings, 1: the operation failed)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def one_line(text: str) -> str:
    return mask_url(re.sub(r"\s+", " ", str(text)).strip())


def checked_settings(**overrides: object) -> Settings:
    """Settings for a command, checked: a bad value is a usage error (exit 2) naming it."""
    try:
        return load_settings(overrides={k: v for k, v in overrides.items() if v is not None})
    except SettingsError as exc:
        raise CliError(str(exc), 2) from None


def check_data_dir(settings: Settings) -> None:
    path = Path(settings.data_dir)
    if path.exists() and not path.is_dir():
        raise CliError(f"the data dir {settings.data_dir} is a file, not a directory", 2)


def non_negative(option: str, value: float | None) -> None:
    if value is not None and (not math.isfinite(value) or value < 0):
        raise CliError(f"{option} {value:g}: give a number, 0 or more", 2)
