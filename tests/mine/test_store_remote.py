"""Content between machines: the shared store, a remote IPFS RPC with auth, gateways as verified CARs, packs.

Real parts only: the session's js-ipfs node (RPC and its HTTP gateway), small HTTP servers in front
of it that add what js-ipfs lacks (an auth check; a trustless `?format=car` endpoint built from the
node's own `dag/export`) or that lie (tampered or substituted content).
"""

from __future__ import annotations

import json
import os
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mine.cli import cli
from mine.errors import IntegrityError, StoreError
from mine.store import (CHUNK_SIZE, EmbeddedStore, GatewayReader, GatewayStore, IpfsNodeStore, compute_cid,
                        open_store)
from mine.store.embedded import PACK_MIN

Handler = Callable[[BaseHTTPRequestHandler, str], tuple[int, dict[str, str], bytes]]


def _bytes(n: int, seed: int) -> bytes:
    return np.random.default_rng(seed).bytes(n)


@contextmanager
def http_server(handle: Handler) -> Iterator[str]:
    """Serve `handle(request, method) -> (status, headers, body)` on a free loopback port."""

    class Serve(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _do(self, method: str) -> None:
            status, headers, body = handle(self, method)
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802
            self._do("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._do("POST")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Serve)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _api_url(ipfs_api: str) -> str:
    return f"http://127.0.0.1:{ipfs_api.split('/')[4]}"


def _read_body(request: BaseHTTPRequestHandler) -> bytes:
    if request.headers.get("Transfer-Encoding", "").lower() != "chunked":
        return request.rfile.read(int(request.headers.get("Content-Length", 0)))
    body = bytearray()
    while True:  # chunked upload (ipfshttpclient streams multipart bodies)
        size = int(request.rfile.readline().split(b";")[0], 16)
        if size == 0:
            request.rfile.readline()
            return bytes(body)
        body += request.rfile.read(size)
        request.rfile.readline()


def _forward(url: str, request: BaseHTTPRequestHandler, method: str) -> tuple[int, dict[str, str], bytes]:
    body = _read_body(request) if method == "POST" else None
    headers = {k: v for k, v in request.headers.items() if k.lower() in ("content-type",)}
    forwarded = urllib.request.Request(url + request.path, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(forwarded, timeout=30) as response:
            return response.status, {"Content-Type": response.headers.get("Content-Type", "")}, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {}, exc.read()


@pytest.fixture(scope="session")
def gateway_url(ipfs_api: str) -> str:
    """The js-ipfs node's own HTTP gateway (it ignores ?format=car and sends the file)."""
    request = urllib.request.Request(_api_url(ipfs_api) + "/api/v0/config/show", method="POST")
    config = json.loads(urllib.request.urlopen(request, timeout=10).read())
    return f"http://127.0.0.1:{config['Addresses']['Gateway'].split('/')[4]}"


def _car_gateway(ipfs_api: str, mangle: Callable[[bytes], bytes] = lambda car: car) -> Handler:
    """A trustless gateway: GET /ipfs/CID?format=car answered with the node's `dag/export` CAR."""
    def handle(request: BaseHTTPRequestHandler, method: str) -> tuple[int, dict[str, str], bytes]:
        url = urllib.parse.urlparse(request.path)
        cid = url.path.removeprefix("/ipfs/")
        assert "format=car" in url.query and request.headers.get("Accept") == "application/vnd.ipld.car"
        export = urllib.request.Request(f"{_api_url(ipfs_api)}/api/v0/dag/export?arg={cid}", method="POST")
        car = urllib.request.urlopen(export, timeout=30).read()
        return 200, {"Content-Type": "application/vnd.ipld.car; version=1"}, mangle(car)
    return handle


# --------------------------------------------------------------------------- shared store


def test_two_mines_share_content_with_store_shared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINE_SHARED_STORE", str(tmp_path / "shared-blocks"))
    runner = CliRunner()
    for name in ("alice", "bob"):
        result = runner.invoke(cli, ["--home", str(tmp_path / name), "init", "--offline", "--store", "shared"])
        assert result.exit_code == 0, result.output
    file = tmp_path / "update.bin"
    file.write_bytes(_bytes(PACK_MIN + CHUNK_SIZE, seed=1))  # large enough to go into a pack
    added = runner.invoke(cli, ["--home", str(tmp_path / "alice"), "ipfs", "add", str(file)])
    assert added.exit_code == 0, added.output
    cid = added.output.split()[1]
    shown = runner.invoke(cli, ["--home", str(tmp_path / "bob"), "ipfs", "cat", cid])
    assert shown.exit_code == 0
    assert shown.stdout_bytes == file.read_bytes()
    assert not (tmp_path / "bob" / "blocks").exists()  # bob read alice's blocks from the shared store


# --------------------------------------------------------------------------- packs


def test_large_content_is_one_pack_seen_by_other_instances(tmp_path: Path) -> None:
    data = _bytes(PACK_MIN + 3 * CHUNK_SIZE + 17, seed=2)
    reader = EmbeddedStore(tmp_path / "blocks")  # opened before the content exists
    writer = EmbeddedStore(tmp_path / "blocks")
    cid = writer.add(data)
    assert cid == compute_cid(data)
    packs = sorted(p.suffix for p in (tmp_path / "blocks" / "packs").iterdir())
    assert packs == [".idx", ".pack"]
    assert not list((tmp_path / "blocks").rglob("*.data"))  # no per-block files
    assert reader.cat(cid) == data and reader.has(cid)
    writer.add(data)
    assert len(list((tmp_path / "blocks" / "packs").glob("*.pack"))) == 1  # nothing new to write


@pytest.mark.parametrize("workers", [1, 3])
def test_a_pack_is_the_same_whatever_the_number_of_hashing_threads(tmp_path: Path, workers: int) -> None:
    # the default is one fewer than the CPUs (the calling thread writes the pack meanwhile)
    assert 1 <= EmbeddedStore(tmp_path / "default").workers <= max(1, (os.cpu_count() or 1) - 1)
    data = _bytes(PACK_MIN + 7 * CHUNK_SIZE + 5, seed=5)
    store = EmbeddedStore(tmp_path / "blocks", workers=workers)
    cid = store.add(data)
    assert cid == compute_cid(data, workers=1)
    assert EmbeddedStore(tmp_path / "blocks").cat(cid) == data


def test_a_damaged_pack_is_detected_and_repaired_by_adding_again(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "blocks")
    data = _bytes(PACK_MIN + CHUNK_SIZE, seed=3)
    cid = store.add(data)
    pack = next((tmp_path / "blocks" / "packs").glob("*.pack"))
    raw = bytearray(pack.read_bytes())
    raw[len(raw) // 3] ^= 0x01
    pack.write_bytes(bytes(raw))
    with pytest.raises(IntegrityError):
        EmbeddedStore(tmp_path / "blocks").cat(cid)
    store.add(data)
    assert EmbeddedStore(tmp_path / "blocks").cat(cid) == data


def test_pack_cids_match_the_ipfs_node(ipfs_store: IpfsNodeStore, tmp_path: Path) -> None:
    data = _bytes(PACK_MIN + 5, seed=4)
    for version in (0, 1):
        assert EmbeddedStore(tmp_path / f"v{version}").add(data, cid_version=version) == \
            ipfs_store.add(data, cid_version=version, only_hash=True)


# --------------------------------------------------------------------------- remote RPC with auth


def test_remote_ipfs_rpc_sends_the_auth_header_from_env(ipfs_api: str, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str | None] = []

    def guarded(request: BaseHTTPRequestHandler, method: str) -> tuple[int, dict[str, str], bytes]:
        seen.append(request.headers.get("Authorization"))
        if request.headers.get("Authorization") != "Bearer s3cret":
            return 401, {}, b"unauthorized"
        return _forward(_api_url(ipfs_api), request, method)

    with http_server(guarded) as url:
        monkeypatch.setenv("MINE_IPFS_AUTH", "s3cret")
        store = open_store(url + "/api/v0", tmp_path)
        assert isinstance(store, IpfsNodeStore)
        cid = store.add(b"remote content")
        assert store.cat(cid) == b"remote content"
        monkeypatch.delenv("MINE_IPFS_AUTH")
        with pytest.raises(StoreError):
            open_store(url, tmp_path).cat(cid)
    assert "Bearer s3cret" in seen and None in seen


def test_https_urls_become_https_multiaddrs(tmp_path: Path) -> None:
    store = open_store("https://ipfs.example.com/rpc/api/v0", tmp_path)
    assert isinstance(store, IpfsNodeStore) and store.api == "/dns/ipfs.example.com/tcp/443/https"
    assert open_store("http://127.0.0.1:5001", tmp_path).api == "/ip4/127.0.0.1/tcp/5001/http"  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- gateways


def test_gateway_car_is_verified_block_by_block(ipfs_store: IpfsNodeStore, ipfs_api: str) -> None:
    data = _bytes(5 * CHUNK_SIZE + 11, seed=5)
    cid = ipfs_store.add(data)
    with http_server(_car_gateway(ipfs_api)) as url:
        reader = GatewayReader(url)
        assert reader.fetch(cid) == data
        assert reader.last_format == "car"

    def flip_last_byte(car: bytes) -> bytes:
        return car[:-1] + bytes([car[-1] ^ 0x01])

    with http_server(_car_gateway(ipfs_api, flip_last_byte)) as url, pytest.raises(IntegrityError, match="does not hash"):
        GatewayReader(url).fetch(cid)


def test_gateway_without_car_support_is_checked_by_rehashing(ipfs_store: IpfsNodeStore, gateway_url: str,
                                                           ipfs_api: str) -> None:
    data = _bytes(3 * CHUNK_SIZE, seed=6)
    cid = ipfs_store.add(data)
    reader = GatewayReader(gateway_url)  # js-ipfs's own gateway: ignores ?format=car
    assert reader.fetch(cid) == data
    assert reader.last_format == "file"
    other = ipfs_store.add(b"something else")

    def substitute(request: BaseHTTPRequestHandler, method: str) -> tuple[int, dict[str, str], bytes]:
        request.path = f"/ipfs/{other}"  # a lying gateway: answers every CID with other content
        return _forward(gateway_url, request, method)

    with http_server(substitute) as url, pytest.raises(IntegrityError, match="hash to"):
        GatewayReader(url).fetch(cid)


def test_gateway_store_keeps_what_it_fetched(ipfs_store: IpfsNodeStore, ipfs_api: str, tmp_path: Path) -> None:
    data = _bytes(2 * CHUNK_SIZE + 3, seed=7)
    cid = ipfs_store.add(data)
    with http_server(_car_gateway(ipfs_api)) as url:
        store = open_store("embedded", tmp_path, gateway=url)
        assert isinstance(store, GatewayStore) and not store.has(cid)
        assert store.cat(cid) == data
    assert EmbeddedStore(tmp_path / "blocks").cat(cid) == data  # kept locally, the gateway is gone
