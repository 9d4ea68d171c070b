"""Store fixtures: one real js-ipfs node per test session on free loopback ports, and both store backends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mine.store import EmbeddedStore, IpfsNodeStore, Store
from mine.store.daemon import ipfs_daemon

__all__ = ["embedded_store", "ipfs_api", "ipfs_store", "store"]


@pytest.fixture(scope="session")
def ipfs_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """API multiaddr of an offline js-ipfs node started for this session (stopped at the end)."""
    with ipfs_daemon(tmp_path_factory.mktemp("ipfs")) as api:
        yield api


@pytest.fixture
def ipfs_store(ipfs_api: str) -> Iterator[IpfsNodeStore]:
    """An :class:`IpfsNodeStore` talking to the session's node."""
    node = IpfsNodeStore(ipfs_api, timeout=10)
    yield node
    node.close()


@pytest.fixture
def embedded_store(tmp_path: Path) -> EmbeddedStore:
    """A fresh :class:`EmbeddedStore` under the test's temporary directory."""
    return EmbeddedStore(tmp_path / "blocks")


@pytest.fixture(params=["embedded", "ipfs"])
def store(request: pytest.FixtureRequest) -> Store:
    """Each backend in turn: the embedded store, then the IPFS node store."""
    name = "embedded_store" if request.param == "embedded" else "ipfs_store"
    backend: Store = request.getfixturevalue(name)
    return backend
