"""Files and folders only the service's own user can read.

The data directory holds redacted transcripts, the audit and (as a chain) the proof of
both; an export is the same record taken out. Other local users have no business reading
them, so what callstream creates there is owner-only from the moment it exists: folders
0700, files 0600, set at creation rather than tightened afterwards. Folders a user
created (an existing `--out` directory, the parent of a store path) are left as they are.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> None:
    """Create ``path`` (and missing parents) owner-only; an existing folder is left alone."""
    if not path.exists():
        path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        os.chmod(path, DIR_MODE)  # mkdir's mode passes through the umask


def private_file(path: Path) -> None:
    """Make sure ``path`` exists, owner-only if this call created it (SQLite then gives its
    -wal and -shm files the same permissions)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return
    os.fchmod(fd, FILE_MODE)
    os.close(fd)


def open_private(path: Path) -> IO[bytes]:
    """Open ``path`` for writing from empty, owner-only whether or not it existed."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    return os.fdopen(fd, "wb")
