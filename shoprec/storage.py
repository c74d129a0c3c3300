"""Storage faults a user can act on: a full disk, a read-only disk, a store another process holds.

Each is a ``StoreError`` with one sentence that says what to do; the CLI prints it as one line
and the HTTP API answers it as 507 (full) or 503 (unavailable) instead of a traceback or a 500.

Why a free-space check *before* opening or writing, rather than catching ENOSPC: Qdrant Edge
keeps its vectors, payloads and write-ahead log in sparse, memory-mapped files (32 MiB chunks
that are mostly holes). When the disk fills, the kernel cannot back a page the shard touches and
the process dies of SIGBUS: no exception ever reaches Python. Measured on a tmpfs: a 48-item
store occupies 14 MiB but 265 MiB of file length, and merely opening it backs ~117 MiB. So the
check asks for every hole in the store's files to be fillable, plus a margin for growth.
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
from pathlib import Path

_MIB = 1024 * 1024


class StoreError(RuntimeError):
    """A storage fault with a message meant for the shop's operator, not a bug."""


class StoreFull(StoreError):
    """Not enough free disk space to open or write the store safely."""


class StoreUnavailable(StoreError):
    """The store cannot be opened: read-only disk, no permission, or held by another process."""


def _existing(path: Path) -> Path:
    """``path`` or its nearest existing parent (a store may not be created yet)."""
    path = Path(path).absolute()
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def free_bytes(path: Path) -> int:
    return shutil.disk_usage(_existing(path)).free


def unbacked_bytes(folder: Path) -> int:
    """Bytes of file length under ``folder`` that no disk block backs yet (holes mmaps may fill)."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                st = os.stat(os.path.join(root, name))
            except OSError:
                continue  # a file removed while walking (segment merge) reserves nothing
            total += max(0, st.st_size - st.st_blocks * 512)
    return total


def ensure_space(folder: Path, margin_mb: float, action: str) -> None:
    """Raise ``StoreFull`` unless the store's holes plus ``margin_mb`` fit on its disk.

    ``margin_mb`` <= 0 disables the check (for file systems that report free space wrongly).
    """
    if margin_mb <= 0:
        return
    folder = Path(folder)
    needed = unbacked_bytes(folder) + int(margin_mb * _MIB) if folder.exists() else int(margin_mb * _MIB)
    free = free_bytes(folder)
    if free < needed:
        raise StoreFull(
            f"not enough disk space to {action}: {free / _MIB:.0f} MiB free on the disk of {folder}, "
            f"{needed / _MIB:.0f} MiB needed (the store's memory-mapped files grow into their reserved "
            f"length; SHOPREC_MIN_FREE_MB={margin_mb:g} is the margin beyond it). Free some space and retry.")


def ensure_writable(folder: Path) -> None:
    """Raise ``StoreUnavailable`` if the store's folder is on a read-only disk or not writable."""
    target = _existing(folder)
    if not os.access(target, os.W_OK):
        raise StoreUnavailable(
            f"the store {folder} is not writable (read-only disk or no permission): Qdrant Edge needs "
            "write access even to answer queries; copy the store to a writable disk or fix its permissions")


def from_os_error(err: BaseException, folder: Path, action: str) -> StoreError | None:
    """The ``StoreError`` an OS/SQLite/Edge error stands for, or None if it is not a storage fault."""
    text = str(err)
    code = getattr(err, "errno", None)
    if code == errno.ENOSPC or "No space left" in text or "database or disk is full" in text:
        return StoreFull(f"the disk of {folder} is full: could not {action}. Free some space and retry.")
    if code == errno.EROFS or "Read-only file system" in text or "readonly database" in text:
        return StoreUnavailable(f"the store {folder} is on a read-only disk: could not {action}")
    if code == errno.EACCES or "Permission denied" in text:
        return StoreUnavailable(f"no permission to {action} in {folder}")
    return None


def translate(err: BaseException, folder: Path, action: str) -> BaseException:
    """``err`` as a ``StoreError`` when it is one, else ``err`` itself (for ``raise ... from err``)."""
    if isinstance(err, StoreError):
        return err
    if isinstance(err, (OSError, sqlite3.OperationalError)) or type(err) is Exception:
        return from_os_error(err, folder, action) or err
    return err
