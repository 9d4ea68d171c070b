"""Content store backed by an IPFS node (Kubo or js-ipfs) over its HTTP RPC API.

The node is never trusted: ``add`` recomputes the CID locally and rejects a different answer,
and ``cat`` recomputes the CID of the returned bytes (falling back to a block-by-block verified
walk when the DAG was built with other settings), so a lying node raises IntegrityError.
Every request carries a timeout; a timeout while fetching content means ContentNotFoundError.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import ipfshttpclient
import requests
import urllib3
from ipfshttpclient import exceptions as ipfs_exc

from mine.errors import ContentNotFoundError, IntegrityError, StoreError
from mine.store.car import read_car
from mine.store.cid import CID, DAG_PB
from mine.store.dag import ContentTooLargeError, fetch_verified, file_size, iter_file
from mine.store.files import atomic_output
from mine.store.unixfs import CHUNK_SIZE, DagBuilder, compute_cid, compute_cid_file, decode_dag_pb, rechunk

__all__ = ["DEFAULT_API", "IpfsNodeStore"]

DEFAULT_API = "/ip4/127.0.0.1/tcp/5001"
_UPLOAD_RATE = 8 << 20  # bytes/s assumed when stretching timeouts for large uploads

_HOW_TO_START = (
    "start a node (Kubo: `ipfs daemon`; js-ipfs: `jsipfs daemon`, or `make setup` and the "
    "mine.store.daemon helper) or use the embedded store instead (store spec \"embedded\")"
)


class IpfsNodeStore:
    """The :class:`~mine.store.Store` interface on top of an IPFS node's RPC API at ``api`` (a multiaddr)."""

    def __init__(self, api: str = DEFAULT_API, timeout: float = 10, *, probe_timeout: float = 2.0,
                 base: str = "api/v0", headers: dict[str, str] | None = None) -> None:
        """``timeout`` bounds every request (seconds without progress); ``probe_timeout`` bounds :meth:`has`.

        ``base`` is the RPC path (Kubo: ``api/v0``); ``headers`` go with every request (a hosted
        node's ``Authorization``, see :func:`mine.store.auth_headers`).
        """
        self.api = api
        self.timeout = float(timeout)
        self.probe_timeout = min(float(probe_timeout), self.timeout)
        try:
            # connect() would reject every daemon newer than 0.8 (VersionMismatch); skip that check
            self._client = ipfshttpclient.Client(api, base, timeout=self.timeout, session=True, headers=headers or {})
        except ipfs_exc.AddressError as exc:
            raise StoreError(f"{api!r} is not a valid IPFS API multiaddr; use e.g. {DEFAULT_API}") from exc
        _drop_strict_pool_option(self._client)

    def __repr__(self) -> str:
        return f"IpfsNodeStore({self.api!r})"

    def close(self) -> None:
        """Release pooled HTTP connections."""
        self._client.close()

    # ------------------------------------------------------------------ plumbing

    @contextmanager
    def _errors(self, what: str, cid: object = None) -> Iterator[None]:
        """Translate ipfshttpclient errors; with ``cid`` set, timeouts mean the content is missing."""
        try:
            yield
        except ipfs_exc.ConnectionError as exc:
            raise StoreError(f"cannot reach the IPFS node at {self.api} ({what}): {_HOW_TO_START}") from exc
        except (ipfs_exc.TimeoutError, requests.exceptions.RequestException) as exc:
            # a read timeout while iterating a streamed response surfaces as a raw requests error
            if isinstance(exc, requests.exceptions.RequestException) and not _is_timeout(exc):
                raise StoreError(f"the connection to the IPFS node at {self.api} failed during {what}: {exc}") from exc
            if cid is not None:
                raise ContentNotFoundError(
                    f"{cid} could not be fetched from the IPFS node at {self.api} within {self.timeout:g}s; "
                    "check that it was added or pinned there, or raise the timeout"
                ) from exc
            raise StoreError(f"the IPFS node at {self.api} timed out during {what}; raise the timeout") from exc
        except ipfs_exc.ErrorResponse as exc:
            message = str(exc)
            lowered = message.lower()
            if cid is not None and ("timed out" in lowered or "not found" in lowered or "no link" in lowered):
                raise ContentNotFoundError(f"{cid} is not available on the IPFS node at {self.api}: {message}") from exc
            raise StoreError(f"the IPFS node at {self.api} refused {what}: {message}") from exc
        except ipfs_exc.Error as exc:
            raise StoreError(f"talking to the IPFS node at {self.api} failed during {what}: {exc}") from exc

    def _transfer_timeout(self, size: int) -> float:
        return self.timeout + size / _UPLOAD_RATE

    @staticmethod
    def _add_options(cid_version: int, only_hash: bool) -> dict[str, object]:
        if cid_version not in (0, 1):
            raise ValueError(f"cid_version must be 0 or 1, got {cid_version!r}")
        return {
            "cid_version": cid_version,
            "raw_leaves": cid_version == 1,
            "chunker": f"size-{CHUNK_SIZE}",
            "trickle": False,
            "only_hash": only_hash,
            "pin": not only_hash,
        }

    def _check_added(self, response: object, expected: str) -> str:
        try:
            got = CID.parse(str(response["Hash"])).encode()  # type: ignore[index]
        except (KeyError, TypeError) as exc:
            raise StoreError(f"unexpected answer from the IPFS node at {self.api} to add: {response!r}") from exc
        if got != expected:
            raise IntegrityError(
                f"the IPFS node at {self.api} computed {got} but the content's CID is {expected} "
                "(256 KiB chunks, balanced layout); check the node's import settings"
            )
        return expected

    def get_block(self, cid: CID) -> bytes:
        """Raw bytes of one block from the node (unverified; readers use :func:`fetch_verified`)."""
        with self._errors("block/get", cid):
            return bytes(self._client.block.get(cid.encode(), timeout=self.timeout))

    # ------------------------------------------------------------------ writing

    def add(self, data: bytes | bytearray | memoryview, *, cid_version: int = 0, only_hash: bool = False) -> str:
        """Add ``data`` to the node (pinned) and return its CID, checked against a local computation."""
        options = self._add_options(cid_version, only_hash)
        expected = compute_cid(data, cid_version=cid_version)
        with self._errors("add"):
            response = self._client.add(io.BytesIO(bytes(data)), **options,
                                        timeout=self._transfer_timeout(len(data)))
        return self._check_added(response, expected)

    def add_file(self, path: Path | str, *, cid_version: int = 0, only_hash: bool = False) -> str:
        """Like :meth:`add` for a file on disk (streamed to the node)."""
        options = self._add_options(cid_version, only_hash)
        try:
            expected = compute_cid_file(path, cid_version=cid_version)
            size = os.path.getsize(path)
            with open(path, "rb") as stream, self._errors("add"):
                response = self._client.add(stream, **options, timeout=self._transfer_timeout(size))
        except FileNotFoundError:
            raise StoreError(f"cannot add {path}: no such file") from None
        return self._check_added(response, expected)

    # ------------------------------------------------------------------ reading

    def _check_size(self, cid: CID, max_bytes: int | None) -> None:
        if max_bytes is None:
            return
        declared = file_size(cid, fetch_verified(self.get_block, cid))
        if declared > max_bytes:
            raise ContentTooLargeError(
                f"{cid} is {declared} bytes, over the {max_bytes}-byte limit; raise the limit if you trust this content"
            )

    @staticmethod
    def _matches(cid: CID, data: bytes) -> bool:
        return compute_cid(data, cid_version=cid.version) == cid.encode()

    def cat(self, cid: str, *, max_bytes: int | None = None) -> bytes:
        """The bytes of ``cid`` from the node, verified by recomputing the CID locally.

        Refuses content over ``max_bytes`` (checked from the root block's size before downloading).
        """
        parsed = CID.parse(cid)
        self._check_size(parsed, max_bytes)
        extra = {} if max_bytes is None else {"length": max_bytes + 1}
        with self._errors("cat", parsed):
            data = bytes(self._client.cat(parsed.encode(), timeout=self.timeout, **extra))
        if max_bytes is not None and len(data) > max_bytes:
            raise ContentTooLargeError(f"{parsed} exceeds the {max_bytes}-byte limit")
        if self._matches(parsed, data):
            return data
        # built with other settings, or the node lied: re-read block by block, verifying each
        return b"".join(iter_file(parsed, self.get_block, max_bytes=max_bytes))

    def cat_to_file(self, cid: str, out_path: Path | str, *, max_bytes: int | None = None) -> int:
        """Stream the bytes of ``cid`` into ``out_path`` (atomically), verifying the CID; return the size."""
        parsed = CID.parse(cid)
        self._check_size(parsed, max_bytes)
        builder = DagBuilder(cid_version=parsed.version)
        with atomic_output(Path(out_path)) as (handle, _):
            with self._errors("cat", parsed):
                stream = self._client.cat(parsed.encode(), stream=True, timeout=self.timeout)
                for chunk in rechunk(stream):
                    if max_bytes is not None and builder.size + len(chunk) > max_bytes:
                        raise ContentTooLargeError(f"{parsed} exceeds the {max_bytes}-byte limit")
                    builder.add_chunk(chunk)
                    handle.write(chunk)
            if builder.finish().cid == parsed:
                return builder.size
            # built with other settings, or the node lied: rewrite from verified blocks
            handle.seek(0)
            handle.truncate()
            size = 0
            for piece in iter_file(parsed, self.get_block, max_bytes=max_bytes):
                handle.write(piece)
                size += len(piece)
            return size

    def has(self, cid: str) -> bool:
        """True if the node holds the root block of ``cid`` (asked offline, within ``probe_timeout``)."""
        parsed = CID.parse(cid)
        try:
            with self._errors("block/stat", parsed):
                self._client.block.stat(parsed.encode(), offline=True, timeout=self.probe_timeout)
        except ContentNotFoundError:
            return False
        return True

    # ------------------------------------------------------------------ CAR files

    def export_car(self, cid: str, out_path: Path | str) -> Path:
        """Write the DAG under ``cid`` as a CARv1 file via ``dag/export``, verifying every block
        and that the DAG is complete before the file appears at ``out_path``."""
        root = CID.parse(cid)
        out = Path(out_path)
        with atomic_output(out) as (handle, tmp):
            with self._errors("dag/export", root):
                for piece in self._client.dag.export(root.encode(), stream=True, timeout=self.timeout):
                    handle.write(piece)
            handle.flush()
            _verify_car(tmp, root)
        return out

    def import_car(self, car_path: Path | str) -> list[str]:
        """Verify a CARv1 file locally, then import it into the node (``dag/import``); return its roots."""
        path = Path(car_path)
        if not path.is_file():
            raise StoreError(f"cannot import {car_path}: no such file")
        roots = _verify_car(path, None)
        with open(path, "rb") as stream, self._errors("dag/import"):
            self._client.dag.imprt(stream, timeout=self._transfer_timeout(path.stat().st_size))
        return [root.encode() for root in roots]


def _drop_strict_pool_option(client: ipfshttpclient.Client) -> None:
    """ipfshttpclient 0.7 hands urllib3 2.x a ``strict`` pool option it ignores but warns about
    (FutureWarning) on every request; remove it from this client's persistent session."""
    session = getattr(getattr(client, "_client", None), "_session", None)
    for adapter in getattr(session, "adapters", {}).values():
        pool_kw = getattr(getattr(adapter, "poolmanager", None), "connection_pool_kw", None)
        if isinstance(pool_kw, dict):
            pool_kw.pop("strict", None)


def _is_timeout(exc: BaseException) -> bool:
    """Whether a requests/urllib3 error (possibly wrapped) is a timeout."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (requests.exceptions.Timeout, urllib3.exceptions.TimeoutError)):
            return True
        if any(isinstance(arg, urllib3.exceptions.TimeoutError) for arg in seen.args):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _verify_car(path: Path, root: CID | None) -> list[CID]:
    """Check a CAR file: every block hashes to its CID, the DAG under its roots is complete,
    and (if given) ``root`` is its only root. Return the roots."""
    seen: set[CID] = set()
    linked: set[CID] = set()
    with open(path, "rb") as stream:
        roots, blocks = read_car(stream)
        for cid, block in blocks:
            seen.add(cid)
            if cid.codec == DAG_PB:
                try:
                    linked.update(decode_dag_pb(block).links)
                except ValueError as exc:
                    raise IntegrityError(f"block {cid} in {path.name} is not valid dag-pb: {exc}") from None
    if root is not None and roots != [root]:
        raise IntegrityError(f"the CAR for {root} names roots {[str(r) for r in roots]}")
    missing = (linked | set(roots)) - seen
    if missing:
        example = next(iter(missing))
        raise IntegrityError(f"the CAR {path.name} lacks {len(missing)} block(s) of its DAG, e.g. {example}")
    return roots
