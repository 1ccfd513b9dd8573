"""Safe, atomic file writes: a reader never sees a half-written file, an interrupted write leaves none,
and nothing that is not a regular file (a device, a FIFO, a folder, the input itself) is ever replaced."""

from __future__ import annotations

import json
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from .errors import UnsafeOutputError

__all__ = ["atomic_open", "output_path", "write_jsonl"]

_PSEUDO_FILESYSTEMS = (Path("/proc"), Path("/sys"), Path("/dev"))
"""Kernel interfaces whose entries look like files; writing there is never what an output means."""


def _kind(mode: int) -> str | None:
    """What a non-regular file is, in a user's words; None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def output_path(path: str | Path, inputs: Iterable[str | Path] = ()) -> Path:
    """The file a write to ``path`` replaces (symbolic links followed), refused unless it is a regular file
    or a new name outside the kernel's pseudo-filesystems, and not one of ``inputs``.

    Raises :class:`UnsafeOutputError` with one line naming the path and what it is.
    """
    path = Path(path)
    target = path.resolve()
    if any(target.is_relative_to(root) for root in _PSEUDO_FILESYSTEMS):
        raise UnsafeOutputError(f"refusing to write {path}: it is under /{target.parts[1]}")
    try:
        info = target.stat()
    except FileNotFoundError:
        info = None
    except OSError as exc:
        raise UnsafeOutputError(f"cannot write {path}: {exc.strerror}") from None
    if info is not None and (kind := _kind(info.st_mode)) is not None:
        raise UnsafeOutputError(f"refusing to write {path}: it is {kind}")
    for source in inputs:
        source = Path(source)
        if info is not None and source.exists() and os.path.samefile(source, target):
            raise UnsafeOutputError(f"refusing to write {path}: it is the input {source}")
    parent = target.parent
    if parent.exists() and not parent.is_dir():
        raise UnsafeOutputError(f"cannot write {path}: {parent} is not a folder")
    return target


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", inputs: Iterable[str | Path] = ()) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; it replaces ``path`` only if the block finishes.

    ``path`` is checked by :func:`output_path` first (a symbolic link is written through, to its target).
    """
    path = output_path(path, inputs)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_jsonl(path: str | Path, rows: Iterable[Any], inputs: Iterable[str | Path] = ()) -> int:
    """Write one compact JSON object a line, atomically (see :func:`atomic_open`); returns the line count."""
    count = 0
    handle: IO[str]
    with atomic_open(path, inputs=inputs) as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")
            count += 1
    return count
