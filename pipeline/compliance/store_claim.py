"""One service per SQLite store, unless the calls' owners are known cluster-wide.

With the in-memory bus there is no call registry: a starting service takes every call the
store holds open as left behind by a crashed process and closes it (`call.ended`,
``server-crashed``). A second service on the same store, a `demo` in the folder where
`serve` runs, would end the first one's live calls, and the first would then fail to
write every event after them. So a service on the memory bus claims its SQLite file with
an exclusive lock (released by the kernel when the process dies, so a crash never leaves
it held). With the Redis bus the registry knows which replica owns which call, and
replicas may share a store. Readers (`export`, `purge`) never claim.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from models.settings import Settings
from pipeline.compliance.private_files import private_dir


class StoreInUse(RuntimeError):
    """Another process serves from this store; the message says which and what to do."""


_held: list[IO[str]] = []  # kept open for the life of the process


def claim_store(settings: Settings) -> None:
    """Claim the SQLite store for this process when it needs to be the only one serving."""
    url = settings.store_url
    if settings.bus != "memory" or url.startswith(("postgres://", "postgresql://")):
        return
    lock_path = Path(f"{url}.lock")
    private_dir(lock_path.parent)
    fh = open(lock_path, "a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "unknown"
        fh.close()
        raise StoreInUse(
            f"the store {url} is in use by another callstream process (pid {holder}): give this "
            "one its own --data-dir, or share a store between replicas with CALLSTREAM_BUS=redis://..."
        ) from None
    fh.seek(0)
    fh.truncate()
    fh.write(f"{os.getpid()}\n")
    fh.flush()
    _held.append(fh)
