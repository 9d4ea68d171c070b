"""UnixFS file DAGs, built byte-for-byte the way Kubo's ``ipfs add`` builds them.

Settings reproduced (Kubo defaults): fixed-size chunks of 262144 bytes, balanced layout, at most
174 links per node.

* CIDv0 (default): every leaf is a dag-pb node holding a UnixFS ``File`` with ``Data`` and
  ``filesize``; internal nodes are UnixFS ``File`` nodes with ``filesize`` and one ``blocksizes``
  entry per child, no ``Data``.
* CIDv1: leaves are raw blocks (codec 0x55), internal nodes dag-pb (0x70), CIDs in base32.

A file of at most one chunk is just its leaf. The empty file is one empty leaf
(``QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH`` in v0).

The dag-pb serialisation follows go-merkledag: ``Links`` (field 2) before ``Data`` (field 1),
each ``PBLink`` as ``Hash`` (1), ``Name`` (2, present and empty), ``Tsize`` (3).

Hashing is streamed: a leaf is hashed as ``header ‖ chunk ‖ trailer`` without concatenating, so
computing a CID costs about one sha256 pass over the data.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import BinaryIO

from mine.store.cid import CID, DAG_PB, RAW, decode_varint, encode_varint

__all__ = [
    "CHUNK_SIZE",
    "MAX_LINKS",
    "BlockSink",
    "DagBuilder",
    "Link",
    "UnixFSNode",
    "compute_cid",
    "compute_cid_file",
    "decode_dag_pb",
    "iter_chunks",
]

CHUNK_SIZE = 262144
"""Kubo's default chunker ``size-262144``."""
MAX_LINKS = 174
"""Kubo's balanced layout: at most 174 links per internal node."""
_PARALLEL_MIN = 8 << 20

UNIXFS_RAW = 0
UNIXFS_DIRECTORY = 1
UNIXFS_FILE = 2
UNIXFS_METADATA = 3
UNIXFS_SYMLINK = 4
UNIXFS_HAMT = 5
_TYPE_NAMES = {0: "raw", 1: "directory", 2: "file", 3: "metadata", 4: "symlink", 5: "HAMT shard"}

BlockSink = Callable[[CID, Sequence[bytes | memoryview]], None]
"""Receives each new block as ``(cid, parts)``; the block's bytes are the concatenation of parts."""


# --------------------------------------------------------------------------- encoding


def _len_field(tag: int, payload_len: int) -> bytes:
    return bytes((tag,)) + encode_varint(payload_len)


def _leaf_v0_frame(size: int) -> tuple[bytes, bytes]:
    """Header and trailer around a chunk of ``size`` bytes in a CIDv0 (dag-pb File) leaf."""
    # UnixFS Data: Type=File (08 02), Data (12 len bytes) unless empty, filesize (18 varint)
    inner_head = b"\x08\x02" + (_len_field(0x12, size) if size else b"")
    inner_tail = b"\x18" + encode_varint(size)
    inner_len = len(inner_head) + size + len(inner_tail)
    # PBNode: Data (0a len unixfs); no links
    return _len_field(0x0A, inner_len) + inner_head, inner_tail


@dataclass(frozen=True, slots=True)
class Link:
    """One child of an internal node: its CID, cumulative DAG size and file bytes below it."""

    cid: CID
    tsize: int
    filesize: int


def encode_internal_node(links: Sequence[Link]) -> bytes:
    """dag-pb bytes of an internal UnixFS File node (Links first, then Data, as go-merkledag)."""
    out = bytearray()
    for link in links:
        cid_bytes = link.cid.to_bytes()
        body = _len_field(0x0A, len(cid_bytes)) + cid_bytes + b"\x12\x00" + b"\x18" + encode_varint(link.tsize)
        out += _len_field(0x12, len(body))
        out += body
    unixfs = bytearray(b"\x08\x02\x18")
    unixfs += encode_varint(sum(link.filesize for link in links))
    for link in links:
        unixfs += b"\x20"
        unixfs += encode_varint(link.filesize)
    out += _len_field(0x0A, len(unixfs))
    out += unixfs
    return bytes(out)


# --------------------------------------------------------------------------- builder


@dataclass
class DagBuilder:
    """Streaming balanced-DAG builder. Feed chunks with :meth:`add_chunk`, then call :meth:`finish`.

    ``sink`` (optional) receives every block as it is produced (leaves first, root last), which is
    how the stores persist them; without a sink only CIDs are computed.
    """

    cid_version: int = 0
    sink: BlockSink | None = None
    max_links: int = MAX_LINKS
    _levels: list[list[Link]] = field(default_factory=lambda: [[]], init=False, repr=False)
    _frames: dict[int, tuple[bytes, bytes]] = field(default_factory=dict, init=False, repr=False)
    _size: int = field(default=0, init=False)
    _finished: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.cid_version not in (0, 1):
            raise ValueError(f"cid_version must be 0 or 1, got {self.cid_version!r}")
        if self.max_links < 2:
            raise ValueError("max_links must be at least 2")

    @property
    def size(self) -> int:
        """File bytes added so far."""
        return self._size

    def add_chunk(self, chunk: bytes | bytearray | memoryview) -> None:
        """Add one leaf chunk (normally :data:`CHUNK_SIZE` bytes, the last one may be shorter)."""
        self.add_leaf(*self.hash_leaf(chunk))

    def hash_leaf(self, chunk: bytes | bytearray | memoryview) -> tuple[Link, tuple[bytes | memoryview, ...]]:
        """Hash one chunk as a leaf block; return its link and the block's parts (no state change).

        Thread-safe, so leaves can be hashed in parallel and then fed in order to :meth:`add_leaf`.
        """
        size = len(chunk)
        if self.cid_version == 0:
            frame = self._frames.get(size)
            if frame is None:
                frame = self._frames[size] = _leaf_v0_frame(size)
            head, tail = frame
            hasher = hashlib.sha256(head)
            hasher.update(chunk)
            hasher.update(tail)
            return Link(CID(0, DAG_PB, hasher.digest()), len(head) + size + len(tail), size), (head, chunk, tail)
        return Link(CID(1, RAW, hashlib.sha256(chunk).digest()), size, size), (chunk,)

    def add_leaf(self, link: Link, parts: Sequence[bytes | memoryview]) -> None:
        """Append a leaf produced by :meth:`hash_leaf` (in file order)."""
        if self._finished:
            raise RuntimeError("DagBuilder already finished")
        if self.sink is not None:
            self.sink(link.cid, parts)
        self._size += link.filesize
        self._push(0, link)

    def _push(self, level: int, link: Link) -> None:
        levels = self._levels
        levels[level].append(link)
        if len(levels[level]) == self.max_links:
            links = levels[level]
            levels[level] = []
            if level + 1 == len(levels):
                levels.append([])
            self._push(level + 1, self._make_parent(links))

    def _make_parent(self, links: Sequence[Link]) -> Link:
        block = encode_internal_node(links)
        cid = CID(self.cid_version, DAG_PB, hashlib.sha256(block).digest())
        if self.sink is not None:
            self.sink(cid, (block,))
        return Link(cid, len(block) + sum(link.tsize for link in links), sum(link.filesize for link in links))

    def finish(self) -> Link:
        """Close the DAG and return the root link (CID, total DAG size, file size)."""
        if self._finished:
            raise RuntimeError("DagBuilder already finished")
        if self._size == 0 and not self._levels[0] and len(self._levels) == 1:
            self.add_chunk(b"")  # Kubo stores the empty file as one empty leaf
        self._finished = True
        levels = self._levels
        level = 0
        while True:
            pending = levels[level]
            above = any(levels[level + 1:])
            if not above and len(pending) == 1:
                return pending[0]
            if pending:
                if level + 1 == len(levels):
                    levels.append([])
                levels[level + 1].append(self._make_parent(pending))
                levels[level] = []
            level += 1


def iter_chunks(data: bytes | bytearray | memoryview, chunk_size: int = CHUNK_SIZE) -> Iterator[memoryview]:
    """Zero-copy fixed-size chunks of an in-memory buffer."""
    view = memoryview(data).cast("B")
    for start in range(0, len(view), chunk_size):
        yield view[start:start + chunk_size]


def iter_file_chunks(stream: BinaryIO, chunk_size: int = CHUNK_SIZE) -> Iterator[memoryview]:
    """Fixed-size chunks read from a binary stream; each chunk is a fresh buffer (safe to keep)."""
    while True:
        buf = bytearray(chunk_size)
        filled = 0
        view = memoryview(buf)
        while filled < chunk_size:
            got = stream.readinto(view[filled:])  # type: ignore[attr-defined]
            if not got:
                break
            filled += got
        if filled == 0:
            return
        yield view[:filled]
        if filled < chunk_size:
            return


def build(chunks: Iterable[bytes | bytearray | memoryview], *, cid_version: int = 0,
          sink: BlockSink | None = None) -> Link:
    """Build the DAG over ``chunks`` and return the root link."""
    builder = DagBuilder(cid_version=cid_version, sink=sink)
    for chunk in chunks:
        builder.add_chunk(chunk)
    return builder.finish()


def _idle_workers() -> int:
    """Threads worth using now: available CPUs minus the load of other processes (at least 1)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        load = 0.0
    # +1: the caller's own thread is part of the load average when it hashes repeatedly
    return max(1, min(cpus, round(cpus - load + 1)))


def compute_cid(data: bytes | bytearray | memoryview, *, cid_version: int = 0,
                workers: int | None = None) -> str:
    """The CID ``ipfs add`` (Kubo defaults) would give ``data``; v1 uses raw leaves and base32.

    Leaves of large buffers are hashed on ``workers`` threads (hashlib releases the GIL); by
    default inputs of at least 8 MiB use the CPUs that are currently idle. ``workers=1`` forces a
    single thread.
    """
    if workers is None:
        workers = _idle_workers() if len(data) >= _PARALLEL_MIN else 1
    builder = DagBuilder(cid_version=cid_version)
    if workers <= 1:
        for chunk in iter_chunks(data):
            builder.add_chunk(chunk)
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cid") as pool:
            for link, parts in pool.map(builder.hash_leaf, iter_chunks(data)):
                builder.add_leaf(link, parts)
    return builder.finish().cid.encode()


def compute_cid_file(path: str | os.PathLike[str], *, cid_version: int = 0) -> str:
    """:func:`compute_cid` of a file's contents, streamed in 256 KiB chunks."""
    with open(path, "rb", buffering=0) as stream:
        return build(iter_file_chunks(stream), cid_version=cid_version).cid.encode()


# --------------------------------------------------------------------------- decoding


@dataclass(frozen=True, slots=True)
class UnixFSNode:
    """A decoded dag-pb block with its UnixFS payload (only the fields this project reads)."""

    links: tuple[CID, ...]
    type: int
    data: bytes
    filesize: int | None
    blocksizes: tuple[int, ...]

    @property
    def type_name(self) -> str:
        """Human name of the UnixFS type (``file``, ``directory``, …)."""
        return _TYPE_NAMES.get(self.type, f"unknown({self.type})")


def _iter_fields(buf: memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """Protobuf wire parser yielding ``(field_number, wire_type, value)`` for varint and bytes fields."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = decode_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = decode_varint(buf, pos)
            yield number, wire, value
        elif wire == 2:
            length, pos = decode_varint(buf, pos)
            if pos + length > end:
                raise ValueError("truncated length-delimited field")
            yield number, wire, buf[pos:pos + length]
            pos += length
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if pos > end:
            raise ValueError("truncated protobuf field")


def decode_dag_pb(block: bytes | memoryview) -> UnixFSNode:
    """Decode a dag-pb block holding UnixFS data. Raises ``ValueError`` on malformed input."""
    view = memoryview(block).cast("B")
    links: list[CID] = []
    unixfs: memoryview | None = None
    for number, wire, value in _iter_fields(view):
        if number == 2 and wire == 2:
            assert isinstance(value, memoryview)
            link_hash: memoryview | None = None
            for l_number, l_wire, l_value in _iter_fields(value):
                if l_number == 1 and l_wire == 2:
                    assert isinstance(l_value, memoryview)
                    link_hash = l_value
            if link_hash is None:
                raise ValueError("dag-pb link without a Hash")
            links.append(CID.from_bytes(link_hash))
        elif number == 1 and wire == 2:
            assert isinstance(value, memoryview)
            unixfs = value
    if unixfs is None:
        raise ValueError("dag-pb node without UnixFS Data")
    node_type = -1
    data = b""
    filesize: int | None = None
    blocksizes: list[int] = []
    for number, wire, value in _iter_fields(unixfs):
        if number == 1 and wire == 0:
            assert isinstance(value, int)
            node_type = value
        elif number == 2 and wire == 2:
            assert isinstance(value, memoryview)
            data = bytes(value)
        elif number == 3 and wire == 0:
            assert isinstance(value, int)
            filesize = value
        elif number == 4 and wire == 0:
            assert isinstance(value, int)
            blocksizes.append(value)
        elif number == 4 and wire == 2:  # tolerate packed encoding
            assert isinstance(value, memoryview)
            pos = 0
            while pos < len(value):
                size, pos = decode_varint(value, pos)
                blocksizes.append(size)
    if node_type < 0:
        raise ValueError("UnixFS Data without a Type")
    return UnixFSNode(tuple(links), node_type, data, filesize, tuple(blocksizes))


def rechunk(pieces: Iterable[bytes | bytearray | memoryview], chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """Regroup a stream of arbitrary-sized pieces into exact ``chunk_size`` chunks (last may be short)."""
    pending = bytearray()
    for piece in pieces:
        if not pending and len(piece) == chunk_size:
            yield bytes(piece)
            continue
        pending += piece
        while len(pending) >= chunk_size:
            yield bytes(pending[:chunk_size])
            del pending[:chunk_size]
    if pending:
        yield bytes(pending)
