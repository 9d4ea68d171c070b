"""Atomic file writes: a temporary file next to the target, renamed into place only on success."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_output", "write_atomic"]


@contextmanager
def atomic_output(out: Path, *, fsync: bool = False) -> Iterator[tuple[BinaryIO, Path]]:
    """Yield ``(handle, temp_path)``; on a clean exit the temp file replaces ``out``, otherwise it is removed."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle, tmp
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(out: Path, pieces: Iterable[bytes | bytearray | memoryview], *, fsync: bool = False) -> int:
    """Write ``pieces`` to ``out`` atomically; return the number of bytes written."""
    size = 0
    with atomic_output(out, fsync=fsync) as (handle, _):
        for piece in pieces:
            handle.write(piece)
            size += len(piece)
    return size
