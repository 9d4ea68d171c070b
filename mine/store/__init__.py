"""Content storage for models, updates and datasets, addressed by IPFS CIDs.

Two interchangeable backends implement :class:`Store`:

* :class:`EmbeddedStore` — blocks as files in a local directory, no daemon needed;
* :class:`IpfsNodeStore` — an IPFS node (Kubo or js-ipfs) over its RPC API.

Both produce the CIDs Kubo's ``ipfs add`` gives (CIDv0 by default, CIDv1 with raw leaves on
request) and verify every byte they return against the CID. On chain a CID is kept as
``(digest: bytes32, codec: uint16)``; see :func:`cid_to_chain` and :func:`cid_from_chain`.

    store = open_store(None, home)              # embedded, under home / "blocks"
    store = open_store("/ip4/127.0.0.1/tcp/5001", home)
    cid = store.add(b"weights")
    assert store.cat(cid, max_bytes=1 << 20) == b"weights"
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Protocol, runtime_checkable

from mine.errors import ConfigError, ContentNotFoundError, IntegrityError, StoreError
from mine.store.car import CarFormatError
from mine.store.cid import CID, InvalidCIDError, cid_from_chain, cid_to_chain
from mine.store.dag import ContentTooLargeError, NotAFileError
from mine.store.embedded import EmbeddedStore
from mine.store.ipfs_node import DEFAULT_API, IpfsNodeStore
from mine.store.unixfs import CHUNK_SIZE, MAX_LINKS, compute_cid, compute_cid_file

__all__ = [
    "CHUNK_SIZE",
    "CID",
    "DEFAULT_API",
    "MAX_LINKS",
    "CarFormatError",
    "ContentNotFoundError",
    "ContentTooLargeError",
    "EmbeddedStore",
    "IntegrityError",
    "InvalidCIDError",
    "IpfsNodeStore",
    "NotAFileError",
    "Store",
    "StoreError",
    "cid_from_chain",
    "cid_to_chain",
    "compute_cid",
    "compute_cid_file",
    "open_store",
]


@runtime_checkable
class Store(Protocol):
    """What the client needs from a content store. All CIDs are strings (``Qm…`` or ``b…``)."""

    def add(self, data: bytes | bytearray | memoryview, *, cid_version: int = 0, only_hash: bool = False) -> str:
        """Store ``data`` as a UnixFS file (Kubo defaults); return its CID."""
        ...

    def add_file(self, path: Path | str, *, cid_version: int = 0, only_hash: bool = False) -> str:
        """Store a file's contents, streamed; return its CID."""
        ...

    def cat(self, cid: str, *, max_bytes: int | None = None) -> bytes:
        """Verified content of ``cid``; ContentNotFoundError, IntegrityError or ContentTooLargeError otherwise."""
        ...

    def cat_to_file(self, cid: str, out_path: Path | str, *, max_bytes: int | None = None) -> int:
        """Write the verified content of ``cid`` to ``out_path`` atomically; return its size."""
        ...

    def has(self, cid: str) -> bool:
        """Whether the content is available locally (without searching a network)."""
        ...

    def export_car(self, cid: str, out_path: Path | str) -> Path:
        """Write the DAG under ``cid`` as a CARv1 file ``ipfs dag import`` accepts."""
        ...

    def import_car(self, car_path: Path | str) -> list[str]:
        """Load a CARv1 file (verified); return its root CIDs."""
        ...

    def close(self) -> None:
        """Release connections, if any."""
        ...


_HTTP_URL = re.compile(r"^https?://(?P<host>\[[^\]]+\]|[^:/]+):(?P<port>\d+)/?$")


def _url_to_multiaddr(spec: str) -> str | None:
    match = _HTTP_URL.match(spec)
    if match is None:
        return None
    host, port = match["host"], match["port"]
    if host.startswith("["):
        return f"/ip6/{host[1:-1]}/tcp/{port}/http"
    if re.fullmatch(r"[\d.]+", host):
        return f"/ip4/{host}/tcp/{port}/http"
    return f"/dns/{host}/tcp/{port}/http"


def open_store(spec: str | None, home: Path, *, timeout: float = 10) -> Store:
    """Open the store named by ``spec``.

    * ``None`` or ``"embedded"``: :class:`EmbeddedStore` in ``home / "blocks"``;
    * a multiaddr (``/ip4/127.0.0.1/tcp/5001``) or ``http://host:port``: :class:`IpfsNodeStore`.
    """
    if spec is None or spec.strip().lower() in ("", "embedded"):
        return EmbeddedStore(Path(home) / "blocks")
    spec = spec.strip()
    if spec.startswith(("/ip4/", "/ip6/", "/dns/", "/dns4/", "/dns6/")):
        return IpfsNodeStore(spec, timeout=timeout)
    multiaddr = _url_to_multiaddr(spec)
    if multiaddr is not None:
        return IpfsNodeStore(multiaddr, timeout=timeout)
    raise ConfigError(
        f"unknown store {spec!r}: use \"embedded\" for the local block store, or the API "
        f"multiaddr of an IPFS node such as {DEFAULT_API}"
    )
