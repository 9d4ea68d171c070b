"""Content storage for models, updates and datasets, addressed by IPFS CIDs.

Two interchangeable backends implement :class:`Store`:

* :class:`EmbeddedStore` — blocks as files in a local directory, no daemon needed;
* :class:`IpfsNodeStore` — an IPFS node (Kubo or js-ipfs) over its RPC API.

Both produce the CIDs Kubo's ``ipfs add`` gives (CIDv0 by default, CIDv1 with raw leaves on
request) and verify every byte they return against the CID. On chain a CID is kept as
``(digest: bytes32, codec: uint16)``; see :func:`cid_to_chain` and :func:`cid_from_chain`.

    store = open_store(None, home)              # embedded, under home / "blocks"
    store = open_store("shared", home)          # one embedded store for all mines of this OS user
    store = open_store("/ip4/127.0.0.1/tcp/5001", home)
    store = open_store("https://ipfs.example.com:5001", home)   # Authorization from MINE_IPFS_AUTH
    store = open_store(None, home, gateway="https://ipfs.io")  # misses fetched as verified CARs
    cid = store.add(b"weights")
    assert store.cat(cid, max_bytes=1 << 20) == b"weights"
"""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from mine.errors import ConfigError, ContentNotFoundError, IntegrityError, StoreError
from mine.store.car import CarFormatError
from mine.store.cid import CID, InvalidCIDError, cid_from_chain, cid_to_chain
from mine.store.dag import ContentTooLargeError, NotAFileError
from mine.store.embedded import EmbeddedStore
from mine.store.unixfs import CHUNK_SIZE, MAX_LINKS, compute_cid, compute_cid_file

if TYPE_CHECKING:
    from mine.store.gateway import GatewayReader, GatewayStore
    from mine.store.ipfs_node import DEFAULT_API, IpfsNodeStore

# The network backends import requests / ipfshttpclient (~0.15 s): loaded when first named, so that
# commands reading an embedded store (`mine bounties`, `mine status`) start fast.
_LAZY = {"GatewayReader": "mine.store.gateway", "GatewayStore": "mine.store.gateway",
         "IpfsNodeStore": "mine.store.ipfs_node", "DEFAULT_API": "mine.store.ipfs_node"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value

__all__ = [
    "CHUNK_SIZE",
    "CID",
    "DEFAULT_API",
    "MAX_LINKS",
    "CarFormatError",
    "ContentNotFoundError",
    "ContentTooLargeError",
    "EmbeddedStore",
    "is_own_store",
    "GatewayReader",
    "GatewayStore",
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
    "auth_headers",
    "open_store",
    "shared_store_dir",
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


_HTTP_URL = re.compile(r"^(?P<scheme>https?)://(?P<host>\[[^\]]+\]|[^:/]+)(?::(?P<port>\d+))?(?P<path>/[^?#]*)?$")


def shared_store_dir() -> Path:
    """The block store every mine of this OS user shares with ``--store shared``.

    ``$MINE_SHARED_STORE`` if set, else ``$XDG_DATA_HOME/mine/blocks`` (``~/.local/share/mine/blocks``).
    """
    explicit = os.environ.get("MINE_SHARED_STORE")
    if explicit:
        return Path(explicit).expanduser()
    data_home = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return data_home / "mine" / "blocks"


def auth_headers() -> dict[str, str]:
    """The ``Authorization`` header for a hosted IPFS node, from ``$MINE_IPFS_AUTH``.

    ``Bearer TOKEN`` / ``Basic BASE64`` are sent as they are, ``USER:PASSWORD`` as HTTP basic
    auth, a bare token as ``Bearer TOKEN``. Unset: no header.
    """
    value = os.environ.get("MINE_IPFS_AUTH", "").strip()
    if not value:
        return {}
    if " " in value:
        return {"Authorization": value}
    if ":" in value:
        return {"Authorization": "Basic " + base64.b64encode(value.encode()).decode()}
    return {"Authorization": f"Bearer {value}"}


def _url_to_api(spec: str) -> tuple[str, str] | None:
    """``http(s)://host[:port][/base]`` as (multiaddr, RPC base path)."""
    match = _HTTP_URL.match(spec)
    if match is None:
        return None
    scheme, host = match["scheme"], match["host"]
    port = match["port"] or ("443" if scheme == "https" else "80")
    path = (match["path"] or "").strip("/")
    if host.startswith("["):
        address = f"/ip6/{host[1:-1]}"
    elif re.fullmatch(r"[\d.]+", host):
        address = f"/ip4/{host}"
    else:
        address = f"/dns/{host}"
    return f"{address}/tcp/{port}/{scheme}", path or "api/v0"


def is_own_store(spec: str | None) -> bool:
    """Whether ``spec`` names the mine's own embedded store (``MINE_HOME/blocks``), which no other mine reads."""
    return (spec or "").strip().lower() in ("", "embedded")


def open_store(spec: str | None, home: Path, *, timeout: float = 10, gateway: str | None = None) -> Store:
    """Open the store named by ``spec``.

    * ``None`` or ``"embedded"``: :class:`EmbeddedStore` in ``home / "blocks"``;
    * ``"shared"``: the embedded store all mines of this OS user share (:func:`shared_store_dir`);
    * ``"embedded:DIR"``: an embedded store in ``DIR``;
    * a multiaddr (``/ip4/127.0.0.1/tcp/5001``) or ``http(s)://host[:port][/base]``: an IPFS node's
      RPC API (:class:`IpfsNodeStore`), with ``$MINE_IPFS_AUTH`` as its ``Authorization`` header.

    With ``gateway`` (an HTTP gateway URL), content an embedded store lacks is fetched from the
    gateway as a CAR, verified block by block, and kept (:class:`GatewayStore`).
    """
    text = (spec or "").strip()
    lowered = text.lower()
    local: EmbeddedStore | None = None
    if is_own_store(spec):
        local = EmbeddedStore(Path(home) / "blocks")
    elif lowered == "shared":
        local = EmbeddedStore(shared_store_dir())
    elif lowered.startswith("embedded:"):
        local = EmbeddedStore(Path(text.split(":", 1)[1]).expanduser())
    if local is not None:
        if gateway:
            from mine.store.gateway import GatewayReader, GatewayStore

            return GatewayStore(local, GatewayReader(gateway, timeout=max(timeout, 30.0)))
        return local
    from mine.store.ipfs_node import DEFAULT_API, IpfsNodeStore

    if text.startswith(("/ip4/", "/ip6/", "/dns/", "/dns4/", "/dns6/")):
        return IpfsNodeStore(text, timeout=timeout, headers=auth_headers())
    api = _url_to_api(text)
    if api is not None:
        return IpfsNodeStore(api[0], timeout=timeout, base=api[1], headers=auth_headers())
    raise ConfigError(
        f"unknown store {spec!r}: use \"embedded\", \"shared\" (one store for all your mines), "
        f"\"embedded:DIR\", or an IPFS node's API: a multiaddr such as {DEFAULT_API} or https://HOST:PORT"
    )
