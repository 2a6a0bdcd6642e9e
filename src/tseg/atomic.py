"""Files written whole or not at all: a temporary file in the same folder, synced, renamed.

Torch-free, so the ONNX Runtime path (``tseg segment EXPORT_DIR``) can use it too.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write_text", "fsync_path"]


def atomic_write_text(path: Path, text: str) -> None:
    """Write a small text file via a temporary file and a rename (the file and its folder are
    synced, so after a crash the name holds the old text or the new, never an empty file)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_path(path.parent)


def fsync_path(path: Path) -> None:
    """Flush a file's or folder's data and metadata to disk (a folder: the names it holds)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as e:  # some file systems cannot sync a folder; the data is synced anyway
        if e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)
