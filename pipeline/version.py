"""The service's version, for `--version`, the start-up lines and the OpenAPI document."""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path


def version() -> str:
    """The installed distribution's version, else the one in pyproject.toml beside the
    package (a source tree run without installing)."""
    try:
        return metadata.version("callstream")
    except metadata.PackageNotFoundError:
        pass
    try:
        with open(Path(__file__).resolve().parent.parent / "pyproject.toml", "rb") as fh:
            return str(tomllib.load(fh)["project"]["version"])
    except (OSError, ValueError, KeyError):
        return "0+unknown"
