"""A content-addressed block store in a local directory: no daemon, same CIDs as Kubo.

Layout (like Kubo's flatfs): ``<root>/<shard>/<key>.data`` where ``key`` is the base32 (lowercase)
of the block's multihash and ``shard`` its next-to-last two characters. Blocks are written to a
temporary file and renamed into place, so a reader never sees a half-written block; every read
is verified against the CID.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from mine.errors import ContentNotFoundError, StoreError
from mine.store.car import read_car, write_car
from mine.store.cid import CID, DAG_PB, b32encode_lower
from mine.store.dag import iter_blocks, iter_file
from mine.store.files import write_atomic
from mine.store.unixfs import DagBuilder, decode_dag_pb, iter_chunks, iter_file_chunks

__all__ = ["EmbeddedStore"]


class EmbeddedStore:
    """Blocks as files under ``root``. Thread-compatible; safe against concurrent writers of the same block."""

    def __init__(self, root: Path | str, *, fsync: bool = True) -> None:
        """``fsync`` makes each new block durable before it is renamed into place (default on)."""
        self.root = Path(root)
        self.fsync = fsync
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the block store at {self.root}: {exc.strerror}; "
                             "check the path and its permissions") from exc

    def __repr__(self) -> str:
        return f"EmbeddedStore({str(self.root)!r})"

    def close(self) -> None:
        """Nothing to release; present for interface symmetry with the node store."""

    # ------------------------------------------------------------------ blocks

    def block_path(self, cid: CID | str) -> Path:
        """Where the block of ``cid`` lives (whether or not it exists)."""
        parsed = CID.parse(cid) if isinstance(cid, str) else cid
        key = b32encode_lower(parsed.multihash)
        return self.root / key[-3:-1] / f"{key}.data"

    def put_block(self, cid: CID, parts: Sequence[bytes | memoryview]) -> None:
        """Store a block given as parts to concatenate; no-op if an intact copy already exists."""
        path = self.block_path(cid)
        if path.exists():
            try:
                if cid.verify(path.read_bytes()):
                    return
            except OSError:
                pass  # unreadable: rewrite it below
        try:
            path.parent.mkdir(exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=path.parent)
        except OSError as exc:
            raise StoreError(f"cannot write to the block store at {self.root}: {exc.strerror}") from exc
        try:
            with os.fdopen(fd, "wb") as handle:
                for part in parts:
                    handle.write(part)
                if self.fsync:
                    handle.flush()
                    os.fsync(handle.fileno())
            os.replace(tmp_name, path)
        except OSError as exc:
            Path(tmp_name).unlink(missing_ok=True)
            hint = "free some disk space" if exc.errno == errno.ENOSPC else "check permissions"
            raise StoreError(f"cannot write block {cid} to {self.root}: {exc.strerror}; {hint}") from exc
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise

    def get_block(self, cid: CID) -> bytes:
        """Raw bytes of a block, unverified (readers go through :func:`fetch_verified`)."""
        try:
            return self.block_path(cid).read_bytes()
        except FileNotFoundError:
            raise ContentNotFoundError(
                f"block {cid} is not in the embedded store at {self.root}; add the content first "
                "or import it from a CAR file / an IPFS node"
            ) from None
        except OSError as exc:
            raise StoreError(f"cannot read block {cid} from {self.root}: {exc.strerror}") from exc

    # ------------------------------------------------------------------ writing

    def _builder(self, cid_version: int, only_hash: bool) -> DagBuilder:
        return DagBuilder(cid_version=cid_version, sink=None if only_hash else self.put_block)

    def add(self, data: bytes | bytearray | memoryview, *, cid_version: int = 0, only_hash: bool = False) -> str:
        """Store ``data`` as a UnixFS file; return its CID (identical to ``ipfs add`` with Kubo defaults)."""
        builder = self._builder(cid_version, only_hash)
        for chunk in iter_chunks(data):
            builder.add_chunk(chunk)
        return builder.finish().cid.encode()

    def add_file(self, path: Path | str, *, cid_version: int = 0, only_hash: bool = False) -> str:
        """Like :meth:`add` for a file on disk, streamed in 256 KiB chunks."""
        builder = self._builder(cid_version, only_hash)
        try:
            with open(path, "rb", buffering=0) as stream:
                for chunk in iter_file_chunks(stream):
                    builder.add_chunk(chunk)
        except FileNotFoundError:
            raise StoreError(f"cannot add {path}: no such file") from None
        return builder.finish().cid.encode()

    # ------------------------------------------------------------------ reading

    def iter_cat(self, cid: str, *, max_bytes: int | None = None) -> Iterator[bytes]:
        """Stream the verified bytes of ``cid`` piece by piece (one leaf at a time)."""
        return iter_file(CID.parse(cid), self.get_block, max_bytes=max_bytes)

    def cat(self, cid: str, *, max_bytes: int | None = None) -> bytes:
        """The bytes of ``cid``, every block verified; refuses content over ``max_bytes``."""
        return b"".join(self.iter_cat(cid, max_bytes=max_bytes))

    def cat_to_file(self, cid: str, out_path: Path | str, *, max_bytes: int | None = None) -> int:
        """Write the verified bytes of ``cid`` to ``out_path`` atomically; return the size."""
        return write_atomic(Path(out_path), self.iter_cat(cid, max_bytes=max_bytes))

    def has(self, cid: str) -> bool:
        """True if every block of the DAG under ``cid`` is present (contents are checked on read)."""
        stack = [CID.parse(cid)]
        while stack:
            current = stack.pop()
            path = self.block_path(current)
            if current.codec != DAG_PB:
                if not path.is_file():
                    return False
                continue
            try:
                block = path.read_bytes()
            except FileNotFoundError:
                return False
            try:
                stack.extend(decode_dag_pb(block).links)
            except ValueError:
                return True  # present but corrupt: `cat` will report it as an IntegrityError
        return True

    def verify(self, cid: str) -> int:
        """Check every block under ``cid`` against its CID; return the number of blocks.

        Raises ContentNotFoundError for a missing block and IntegrityError for a corrupt one.
        """
        return sum(1 for _ in iter_blocks(CID.parse(cid), self.get_block))

    # ------------------------------------------------------------------ CAR files

    def export_car(self, cid: str, out_path: Path | str) -> Path:
        """Write the DAG under ``cid`` as a CARv1 file (root first), every block verified."""
        root = CID.parse(cid)
        write_car(out_path, [root], iter_blocks(root, self.get_block))
        return Path(out_path)

    def import_car(self, car_path: Path | str) -> list[str]:
        """Store every block of a CARv1 file (each verified against its CID); return its roots."""
        try:
            with open(car_path, "rb") as stream:
                roots, blocks = read_car(stream)
                for cid, block in blocks:
                    self.put_block(cid, (block,))
        except FileNotFoundError:
            raise StoreError(f"cannot import {car_path}: no such file") from None
        return [root.encode() for root in roots]
