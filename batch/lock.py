"""One writer per batch output: a lock file beside it that names the live writer.

``nareta score --output OUT`` holds ``OUT.lock`` (beside ``OUT``, so it exists before the
output directory and survives ``--force``) for the whole job. The lock is an ``flock`` on
that file, so the kernel releases it when the writer dies, however it dies; the file's
content (pid, host, start time, command) names the writer in the refusal a second writer
gets, fresh or ``--resume``. A lock file left by a dead writer is taken over with a message.
Without the lock, several runs on one output all finished with exit 0, redid the same parts,
raced on ``_manifest.json``, and a resume deleted temp parts a live writer was writing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

from nareta.errors import OutputLockedError, OutputNotWritableError

logger = logging.getLogger("nareta.batch")


def lock_path(output: str | Path) -> Path:
    output = Path(output)
    return output.parent / f"{output.name}.lock"


def _describe(holder: dict) -> str:
    return (f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, started "
            f"{holder.get('started_utc', '?')}")


def _read(fd: int) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        holder = json.loads(os.read(fd, 65536).decode() or "{}")
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _alive(pid: object) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, TypeError, ProcessLookupError):
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


@contextlib.contextmanager
def hold_output_lock(output: str | Path) -> Iterator[Path]:
    """Hold the single-writer lock of ``output`` for the ``with`` block.

    Raises
    ------
    OutputLockedError
        A live process holds it (the message names its pid and host).
    OutputNotWritableError
        The lock file cannot be created.
    """
    output = Path(output)
    path = lock_path(output)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputNotWritableError(f"output {output}: cannot create its directory "
                                     f"({exc.strerror})") from exc
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutputNotWritableError(f"output {output}: cannot create the lock file {path} "
                                         f"({exc.strerror})") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            raise OutputLockedError(
                f"output {output}: another `nareta score` is writing it ({_describe(holder)}; "
                f"lock {path}); wait for it to finish or stop it, then rerun (--resume keeps "
                "its finished parts)") from None
        # The file may have been unlinked by its previous holder between our open and our
        # lock: then we hold a lock nobody else can see; start again on the current file.
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        previous = _read(fd)
        if previous:
            here = previous.get("host") == socket.gethostname()
            gone = "no longer running" if here and not _alive(previous.get("pid")) else \
                "no longer holding it"
            logger.warning("output %s: taking over the lock left by %s (%s)", output,
                           _describe(previous), gone)
        content = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                              "started_utc": dt.datetime.now(dt.UTC).isoformat(
                                  timespec="seconds"),
                              "command": list(sys.argv)}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, content, 0)
        os.fsync(fd)
        yield path
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # while still locked: a waiter retries on a fresh file
        os.close(fd)
