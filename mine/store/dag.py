"""Walking UnixFS file DAGs block by block, verifying every block against its CID.

Both stores read content through :func:`iter_file` with their own ``get_block``; whatever the
source (local files or a remote node), every byte returned has been checked against the root CID.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from mine.errors import IntegrityError, StoreError
from mine.store.cid import CID, DAG_PB, RAW
from mine.store.unixfs import UNIXFS_FILE, UNIXFS_RAW, UnixFSNode, decode_dag_pb

__all__ = ["BlockGetter", "ContentTooLargeError", "NotAFileError", "file_size", "iter_blocks", "iter_file"]

BlockGetter = Callable[[CID], bytes]
"""Returns the raw bytes of a block; raises ContentNotFoundError when it is missing."""


class ContentTooLargeError(StoreError):
    """Content is larger than the caller's ``max_bytes`` limit."""


class NotAFileError(StoreError):
    """The CID names something other than a UnixFS file (a directory, symlink, foreign codec)."""


def fetch_verified(get_block: BlockGetter, cid: CID) -> bytes:
    """``get_block(cid)`` checked against the CID's sha2-256 digest."""
    block = get_block(cid)
    if not cid.verify(block):
        raise IntegrityError(
            f"block {cid} does not hash to its CID: the stored copy is corrupt or the node lied; "
            "delete it and fetch the content again from a trusted source"
        )
    return block


def _decode(cid: CID, block: bytes) -> UnixFSNode:
    if cid.codec != DAG_PB:
        raise NotAFileError(f"{cid} has codec 0x{cid.codec:x}; only dag-pb and raw UnixFS files can be read")
    try:
        node = decode_dag_pb(block)
    except ValueError as exc:
        raise IntegrityError(f"block {cid} is not valid dag-pb/UnixFS: {exc}") from None
    if node.type not in (UNIXFS_FILE, UNIXFS_RAW):
        raise NotAFileError(f"{cid} is a UnixFS {node.type_name}, not a file")
    return node


def file_size(cid: CID, root_block: bytes) -> int:
    """Size in bytes of the file whose (verified) root block is ``root_block``."""
    if cid.codec == RAW:
        return len(root_block)
    node = _decode(cid, root_block)
    if node.filesize is not None:
        return node.filesize
    return len(node.data) + sum(node.blocksizes)


def iter_file(root: CID, get_block: BlockGetter, *, max_bytes: int | None = None) -> Iterator[bytes]:
    """Yield the bytes of the UnixFS file ``root`` in order, verifying every block.

    ``max_bytes`` is enforced up front from the root's declared size and again while streaming.
    Raises IntegrityError on any hash or structure mismatch and ContentNotFoundError when a
    block is missing.
    """
    root_block = fetch_verified(get_block, root)
    declared = file_size(root, root_block)
    if max_bytes is not None and declared > max_bytes:
        raise ContentTooLargeError(
            f"{root} is {declared} bytes, over the {max_bytes}-byte limit; raise the limit if you trust this content"
        )
    produced = 0
    # explicit stack of (cid, block or None) to avoid deep recursion; children pushed in reverse
    stack: list[tuple[CID, bytes | None]] = [(root, root_block)]
    while stack:
        cid, block = stack.pop()
        if block is None:
            block = fetch_verified(get_block, cid)
        if cid.codec == RAW:
            piece = block
            children: tuple[CID, ...] = ()
        else:
            node = _decode(cid, block)
            piece, children = node.data, node.links
            if node.blocksizes and len(node.blocksizes) != len(children):
                raise IntegrityError(f"block {cid} has {len(children)} links but {len(node.blocksizes)} blocksizes")
        if piece:
            produced += len(piece)
            if max_bytes is not None and produced > max_bytes:
                raise ContentTooLargeError(f"{root} exceeds the {max_bytes}-byte limit while reading")
            yield piece
        stack.extend((child, None) for child in reversed(children))
    if produced != declared:
        raise IntegrityError(f"{root} declares {declared} bytes but its blocks hold {produced}")


def iter_blocks(root: CID, get_block: BlockGetter) -> Iterator[tuple[CID, bytes]]:
    """Yield every block of the DAG under ``root`` depth-first, root first, each verified."""
    stack = [root]
    seen: set[CID] = set()
    while stack:
        cid = stack.pop()
        if cid in seen:
            continue
        seen.add(cid)
        block = fetch_verified(get_block, cid)
        yield cid, block
        if cid.codec == DAG_PB:
            try:
                links = decode_dag_pb(block).links
            except ValueError as exc:
                raise IntegrityError(f"block {cid} is not valid dag-pb: {exc}") from None
            stack.extend(reversed(links))
