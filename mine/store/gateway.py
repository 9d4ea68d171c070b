"""Reading content from any IPFS HTTP gateway, trusting nothing it says.

`GatewayReader.fetch(cid)` asks for the DAG as a CAR (`GET /ipfs/CID?format=car`, `Accept:
application/vnd.ipld.car`, the trustless-gateway form) and checks every block against its CID while
it streams in, then rebuilds the file from the root using only those verified blocks, so a gateway
can neither change a byte nor leave one out. A gateway that ignores `format=car` and answers with
the file itself (older ones, such as js-ipfs 0.66) is accepted only if the bytes, chunked as Kubo
does (256 KiB, balanced), hash to the same CID; otherwise the answer is an `IntegrityError`.

`GatewayStore` puts a gateway behind another store: reads that miss locally are fetched from the
gateway, verified, and kept in the local store; writes go to the local store only.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from pathlib import Path

import requests

from mine.errors import ContentNotFoundError, IntegrityError, StoreError
from mine.store.car import CarFormatError, read_car
from mine.store.cid import CID
from mine.store.dag import ContentTooLargeError, iter_file
from mine.store.embedded import EmbeddedStore
from mine.store.files import write_atomic
from mine.store.unixfs import DagBuilder, iter_chunks

__all__ = ["CAR_MEDIA_TYPE", "GatewayReader", "GatewayStore"]

CAR_MEDIA_TYPE = "application/vnd.ipld.car"
#: Bytes of CAR framing allowed on top of the content (block headers, internal nodes).
_CAR_OVERHEAD = 1 << 20


class GatewayReader:
    """Verified reads from the gateway at `url` (e.g. `https://ipfs.io` or `http://127.0.0.1:8080`)."""

    def __init__(self, url: str, *, timeout: float = 30.0, headers: dict[str, str] | None = None) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()
        self._session.headers.update(headers or {})
        self.last_format: str | None = None  # "car" or "file": how the last answer came

    def __repr__(self) -> str:
        return f"GatewayReader({self.url!r})"

    def close(self) -> None:
        self._session.close()

    def _get(self, cid: str, limit: int | None) -> tuple[bytes, str]:
        try:
            response = self._session.get(f"{self.url}/ipfs/{cid}", params={"format": "car"},
                                         headers={"Accept": CAR_MEDIA_TYPE}, timeout=self.timeout, stream=True)
        except requests.RequestException as exc:
            raise StoreError(f"cannot reach the gateway {self.url}: {exc}") from None
        with response:
            if response.status_code in (404, 410):
                raise ContentNotFoundError(f"the gateway {self.url} does not have {cid}")
            if response.status_code >= 400:
                raise StoreError(f"the gateway {self.url} answered HTTP {response.status_code} for {cid}")
            body = bytearray()
            try:
                for piece in response.iter_content(1 << 20):
                    body += piece
                    if limit is not None and len(body) > limit:
                        raise ContentTooLargeError(f"{cid} from {self.url} is larger than the {limit}-byte limit")
            except requests.RequestException as exc:
                raise StoreError(f"the gateway {self.url} broke off sending {cid}: {exc}") from None
            return bytes(body), response.headers.get("Content-Type", "")

    def fetch_blocks(self, cid: str, *, max_bytes: int | None = None) -> dict[CID, bytes]:
        """Every block of the DAG under `cid`, each verified, as the gateway's CAR delivered them."""
        root = CID.parse(cid)
        limit = None if max_bytes is None else max_bytes + _CAR_OVERHEAD
        body, content_type = self._get(cid, limit)
        if not content_type.startswith(CAR_MEDIA_TYPE):
            return self._from_file_answer(root, body, max_bytes)
        try:
            _, blocks = read_car(io.BytesIO(body))  # raises IntegrityError on the first forged block
            verified = dict(blocks)
        except CarFormatError as exc:
            raise IntegrityError(f"the gateway {self.url} sent a broken CAR for {cid}: {exc}") from None
        self.last_format = "car"
        if root not in verified:
            raise IntegrityError(f"the gateway {self.url} sent a CAR without the requested root {cid}")
        return verified

    def _from_file_answer(self, root: CID, body: bytes, max_bytes: int | None) -> dict[CID, bytes]:
        """A gateway that sent the file itself: accept it only if it hashes to `root` (Kubo chunking)."""
        if max_bytes is not None and len(body) > max_bytes:
            raise ContentTooLargeError(f"{root} from {self.url} is larger than the {max_bytes}-byte limit")
        got, blocks = _rechunk(body, root.version)
        if got != root.encode():
            raise IntegrityError(
                f"the gateway {self.url} did not send a CAR for {root.encode()}, and the bytes it sent hash to "
                f"{got}; use a trustless gateway (one that serves ?format=car)"
            )
        self.last_format = "file"
        return blocks

    def fetch(self, cid: str, *, max_bytes: int | None = None) -> bytes:
        """The verified content of `cid` (a UnixFS file)."""
        blocks = self.fetch_blocks(cid, max_bytes=max_bytes)
        return b"".join(iter_file(CID.parse(cid), _lookup(blocks, self.url), max_bytes=max_bytes))


def _rechunk(data: bytes, cid_version: int) -> tuple[str, dict[CID, bytes]]:
    """The CID and blocks `ipfs add` (Kubo defaults) makes of `data`, in memory."""
    blocks: dict[CID, bytes] = {}

    def keep(cid: CID, parts: Sequence[bytes | memoryview]) -> None:
        blocks[cid] = b"".join(bytes(p) for p in parts)

    builder = DagBuilder(cid_version=cid_version, sink=keep)
    for chunk in iter_chunks(data):
        builder.add_chunk(chunk)
    return builder.finish().cid.encode(), blocks


def _lookup(blocks: dict[CID, bytes], url: str) -> Callable[[CID], bytes]:
    def get(cid: CID) -> bytes:
        try:
            return blocks[cid]
        except KeyError:
            raise IntegrityError(f"the gateway {url} left block {cid} out of the CAR") from None
    return get


class GatewayStore:
    """`local` for writes and reads; content missing locally is fetched from `gateway` (verified) and kept."""

    def __init__(self, local: EmbeddedStore, gateway: GatewayReader) -> None:
        self.local = local
        self.gateway = gateway

    def __repr__(self) -> str:
        return f"GatewayStore({self.local!r}, {self.gateway!r})"

    def add(self, data: bytes | bytearray | memoryview, *, cid_version: int = 0, only_hash: bool = False) -> str:
        return self.local.add(data, cid_version=cid_version, only_hash=only_hash)

    def add_file(self, path: Path | str, *, cid_version: int = 0, only_hash: bool = False) -> str:
        return self.local.add_file(path, cid_version=cid_version, only_hash=only_hash)

    def _ensure(self, cid: str, max_bytes: int | None) -> None:
        if self.local.has(cid):
            return
        for block_cid, block in self.gateway.fetch_blocks(cid, max_bytes=max_bytes).items():
            self.local.put_block(block_cid, (block,))

    def cat(self, cid: str, *, max_bytes: int | None = None) -> bytes:
        self._ensure(cid, max_bytes)
        return self.local.cat(cid, max_bytes=max_bytes)

    def cat_to_file(self, cid: str, out_path: Path | str, *, max_bytes: int | None = None) -> int:
        self._ensure(cid, max_bytes)
        return write_atomic(Path(out_path), self.local.iter_cat(cid, max_bytes=max_bytes))

    def has(self, cid: str) -> bool:
        return self.local.has(cid)

    def export_car(self, cid: str, out_path: Path | str) -> Path:
        self._ensure(cid, None)
        return self.local.export_car(cid, out_path)

    def import_car(self, car_path: Path | str) -> list[str]:
        return self.local.import_car(car_path)

    def close(self) -> None:
        self.gateway.close()
        self.local.close()

