"""A content-addressed block store in a local directory: no daemon, same CIDs as Kubo.

Layout (like Kubo's flatfs): ``<root>/<shard>/<key>.data`` where ``key`` is the base32 (lowercase)
of the block's multihash and ``shard`` its next-to-last two characters. Blocks are written to a
temporary file and renamed into place, so a reader never sees a half-written block; every read
is verified against the CID.

Large inputs (``PACK_MIN`` bytes or more) are stored as one *pack* instead of one file per block:
``<root>/packs/NAME.pack`` holds the blocks back to back and ``NAME.idx`` lists (multihash, offset,
length); the index is renamed into place after the pack, so a visible index always describes a
complete pack. Leaves are hashed on worker threads while this thread appends them to the pack, so
``add`` of a large file runs at about the speed of sha256 itself (creating hundreds of small files
costs more than hashing them). Readers look in the flat layout first, then in the packs (new packs
written by other processes sharing the directory are picked up on a miss).

Durability: by default the OS writes new blocks to disk in its own time (``fsync=False``); a crash
can lose blocks added just before it, never corrupt what is read (every read is verified, and
adding the content again repairs a damaged or missing block). ``fsync=True`` makes every block (or
the pack) durable before ``add`` returns, at disk speed.
"""

from __future__ import annotations

import errno
import itertools
import os
import struct
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from mine.errors import ContentNotFoundError, StoreError
from mine.store.car import read_car, write_car
from mine.store.cid import CID, DAG_PB, b32encode_lower
from mine.store.dag import iter_blocks, iter_file
from mine.store.files import write_atomic
from mine.store.unixfs import CHUNK_SIZE, DagBuilder, Link, decode_dag_pb, iter_chunks, iter_file_chunks

__all__ = ["EmbeddedStore"]

#: Inputs of at least this many bytes are hashed on several threads and stored as one pack.
PACK_MIN = 4 << 20
PACK_MAGIC = b"mine-pack-index-v1\n"
_tmp_counter = itertools.count()
_ENTRY = struct.Struct(">QI")  # offset, length (after a length-prefixed multihash)


class _PackWriter:
    """Appends blocks to a new pack file; `commit` renames it and writes its index."""

    def __init__(self, directory: Path, fsync: bool) -> None:
        self.directory = directory
        self.fsync = fsync
        directory.mkdir(exist_ok=True)
        self.tmp = str(directory / f".{os.getpid()}.{next(_tmp_counter)}.pack.tmp")
        self.fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        self.offset = 0
        self.entries: list[tuple[bytes, int, int]] = []

    def put(self, cid: CID, parts: Sequence[bytes | memoryview]) -> None:
        views = [memoryview(p) for p in parts]
        length = sum(len(v) for v in views)
        while views:
            written = os.writev(self.fd, views)
            while views and written >= len(views[0]):
                written -= len(views[0])
                views.pop(0)
            if views and written:
                views[0] = views[0][written:]
        self.entries.append((cid.multihash, self.offset, length))
        self.offset += length

    def commit(self, name: str) -> Path | None:
        if self.fsync:
            os.fsync(self.fd)
        os.close(self.fd)
        if not self.entries:
            _unlink(self.tmp)
            return None
        final = f"{name}-{time.time_ns():x}-{os.getpid()}"
        pack = self.directory / f"{final}.pack"
        os.replace(self.tmp, pack)
        index = bytearray(PACK_MAGIC)
        for multihash, offset, length in self.entries:
            index += bytes((len(multihash),)) + multihash + _ENTRY.pack(offset, length)
        tmp_index = self.directory / f".{final}.idx.tmp"
        with open(tmp_index, "wb") as handle:
            handle.write(index)
            if self.fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp_index, self.directory / f"{final}.idx")
        return pack

    def abort(self) -> None:
        os.close(self.fd)
        _unlink(self.tmp)


class EmbeddedStore:
    """Blocks as files under ``root``. Thread-compatible; safe against concurrent writers of the same block."""

    def __init__(self, root: Path | str, *, fsync: bool = False, workers: int | None = None) -> None:
        """``fsync`` makes each new block durable before it is renamed into place (default off: see
        the module docstring); ``workers`` threads hash the leaves of large inputs while the calling
        thread writes them (default: one fewer than the CPUs, 1..4 — on 2 cores a second hashing
        thread competes with the writer: 64 MiB took 0.071–0.087 s with 2, 0.061 s with 1)."""
        self.root = Path(root)
        self.fsync = fsync
        self.workers = workers or max(1, min(4, (os.cpu_count() or 2) - 1))
        self._shards: set[str] = set()
        self._shards_lock = threading.Lock()
        self._packs: dict[bytes, tuple[str, int, int]] = {}  # multihash -> (pack path, offset, length)
        self._loaded_indexes: set[str] = set()
        self._packs_lock = threading.Lock()
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
        key = b32encode_lower(cid.multihash)
        shard = os.path.join(self.root, key[-3:-1])
        path = os.path.join(shard, key + ".data")
        if os.path.exists(path):
            try:
                with open(path, "rb") as existing:
                    if cid.verify(existing.read()):
                        return
            except OSError:
                pass  # unreadable: rewrite it below
        tmp_name = os.path.join(shard, f".{key}.{os.getpid()}.{next(_tmp_counter)}.tmp")
        try:
            if shard not in self._shards:
                os.makedirs(shard, exist_ok=True)
                with self._shards_lock:
                    self._shards.add(shard)
            fd = os.open(tmp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as exc:
            raise StoreError(f"cannot write to the block store at {self.root}: {exc.strerror}") from exc
        try:
            try:
                for part in parts:
                    view = memoryview(part)
                    while view:
                        view = view[os.write(fd, view):]
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp_name, path)
        except OSError as exc:
            _unlink(tmp_name)
            hint = "free some disk space" if exc.errno == errno.ENOSPC else "check permissions"
            raise StoreError(f"cannot write block {cid} to {self.root}: {exc.strerror}; {hint}") from exc
        except BaseException:
            _unlink(tmp_name)
            raise

    def get_block(self, cid: CID) -> bytes:
        """Raw bytes of a block, unverified (readers go through :func:`fetch_verified`)."""
        try:
            block = self.block_path(cid).read_bytes()
        except FileNotFoundError:
            located = self._in_pack(cid)
            if located is not None:
                return self._read_pack(cid, located)
            raise ContentNotFoundError(
                f"block {cid} is not in the embedded store at {self.root}; add the content first "
                "or import it from a CAR file / an IPFS node"
            ) from None
        except OSError as exc:
            raise StoreError(f"cannot read block {cid} from {self.root}: {exc.strerror}") from exc
        spare = self._packs.get(cid.multihash)
        if spare is not None and not cid.verify(block):
            return self._read_pack(cid, spare)  # the flat copy is damaged; a pack holds a good one
        return block

    # ------------------------------------------------------------------ packs

    @property
    def packs_dir(self) -> Path:
        return self.root / "packs"

    def _in_pack(self, cid: CID) -> tuple[str, int, int] | None:
        located = self._packs.get(cid.multihash)
        if located is None and self._load_new_indexes():
            located = self._packs.get(cid.multihash)
        return located

    def _load_new_indexes(self) -> bool:
        """Read index files not seen yet (oldest first, so a newer copy of a block wins)."""
        try:
            names = [e for e in os.scandir(self.packs_dir) if e.name.endswith(".idx") and not e.name.startswith(".")]
        except FileNotFoundError:
            return False
        fresh = sorted((e.stat().st_mtime_ns, e.name) for e in names if e.name not in self._loaded_indexes)
        if not fresh:
            return False
        with self._packs_lock:
            for _, name in fresh:
                if name in self._loaded_indexes:
                    continue
                pack = str(self.packs_dir / (name[:-4] + ".pack"))
                try:
                    data = (self.packs_dir / name).read_bytes()
                except OSError:
                    continue
                if not data.startswith(PACK_MAGIC):
                    continue  # not ours; never trust it
                pos = len(PACK_MAGIC)
                while pos < len(data):
                    n = data[pos]
                    multihash = data[pos + 1:pos + 1 + n]
                    offset, length = _ENTRY.unpack_from(data, pos + 1 + n)
                    self._packs[bytes(multihash)] = (pack, offset, length)
                    pos += 1 + n + _ENTRY.size
                self._loaded_indexes.add(name)
        return True

    def _read_pack(self, cid: CID, located: tuple[str, int, int]) -> bytes:
        pack, offset, length = located
        try:
            fd = os.open(pack, os.O_RDONLY)
        except FileNotFoundError:
            raise ContentNotFoundError(f"block {cid}: its pack {pack} is gone; add the content again") from None
        try:
            return os.pread(fd, length, offset)
        finally:
            os.close(fd)

    def _in_pack_and_intact(self, cid: CID) -> bool:
        """Whether a pack already holds an intact copy of the block (no file-system lookups: fast).

        A copy in the flat layout is not looked for; if there is one, the pack's copy is a spare
        that `get_block` falls back to when the flat copy is damaged.
        """
        located = self._packs.get(cid.multihash)  # indexes were refreshed when the add began
        return located is not None and cid.verify(self._read_pack(cid, located))

    # ------------------------------------------------------------------ writing

    def _build(self, chunks: Iterable[memoryview], *, cid_version: int, only_hash: bool, pack: bool) -> str:
        """Hash (and unless ``only_hash`` store) the leaves of ``chunks``, then the internal nodes.

        With ``pack`` the leaves are hashed on worker threads, at most ``2 × workers`` in flight
        (bounded memory when streaming a file), while this thread assembles the DAG in file order
        and appends every new block to one pack file.
        """
        if only_hash or not pack:
            builder = DagBuilder(cid_version=cid_version, sink=None if only_hash else self.put_block)
            for chunk in chunks:
                builder.add_chunk(chunk)
            return builder.finish().cid.encode()
        self._load_new_indexes()
        writer = _PackWriter(self.packs_dir, self.fsync)

        def sink(cid: CID, parts: Sequence[bytes | memoryview]) -> None:
            if not self._in_pack_and_intact(cid):
                writer.put(cid, parts)

        builder = DagBuilder(cid_version=cid_version, sink=sink)
        window: deque[Future[tuple[Link, tuple[bytes | memoryview, ...]]]] = deque()
        try:
            with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="embedded-add") as pool:
                def drain(keep: int) -> None:
                    while len(window) > keep:
                        builder.add_leaf(*window.popleft().result())

                for chunk in chunks:
                    window.append(pool.submit(builder.hash_leaf, chunk))
                    drain(2 * self.workers)
                drain(0)
            root = builder.finish().cid
        except OSError as exc:
            writer.abort()
            hint = "free some disk space" if exc.errno == errno.ENOSPC else "check permissions"
            raise StoreError(f"cannot write a pack to {self.packs_dir}: {exc.strerror}; {hint}") from exc
        except BaseException:
            writer.abort()
            raise
        try:
            writer.commit(b32encode_lower(root.multihash)[-16:])
        except OSError as exc:
            raise StoreError(f"cannot write a pack to {self.packs_dir}: {exc.strerror}") from exc
        self._load_new_indexes()
        return root.encode()

    def add(self, data: bytes | bytearray | memoryview, *, cid_version: int = 0, only_hash: bool = False) -> str:
        """Store ``data`` as a UnixFS file; return its CID (identical to ``ipfs add`` with Kubo defaults)."""
        return self._build(iter_chunks(data), cid_version=cid_version, only_hash=only_hash,
                           pack=len(data) >= PACK_MIN)

    def add_file(self, path: Path | str, *, cid_version: int = 0, only_hash: bool = False) -> str:
        """Like :meth:`add` for a file on disk, streamed in 256 KiB chunks."""
        try:
            with open(path, "rb", buffering=0) as stream:
                size = os.fstat(stream.fileno()).st_size
                return self._build(iter_file_chunks(stream, CHUNK_SIZE), cid_version=cid_version, only_hash=only_hash,
                                   pack=size >= PACK_MIN)
        except FileNotFoundError:
            raise StoreError(f"cannot add {path}: no such file") from None

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
            if current.codec != DAG_PB:
                if not self.block_path(current).is_file() and self._in_pack(current) is None:
                    return False
                continue
            try:
                block = self.get_block(current)
            except ContentNotFoundError:
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


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
