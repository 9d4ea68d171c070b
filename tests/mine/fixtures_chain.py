"""Chain fixtures: one real anvil per test session, a fresh Sonar deployment per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mine.chain import SonarClient, connect
from mine.devnet import anvil, dev_account


@pytest.fixture(scope="session")
def rpc_url() -> Iterator[str]:
    """RPC URL of a real anvil on a free loopback port (stopped after the session)."""
    with anvil() as url:
        yield url


@pytest.fixture(scope="module")
def sonar(rpc_url: str) -> SonarClient:
    """A freshly deployed Sonar, sending from dev account 0."""
    return SonarClient.deploy(connect(rpc_url), dev_account(0))


@pytest.fixture
def chain_snapshot(sonar: SonarClient) -> Iterator[None]:
    """Revert the chain to its state before the test (anvil snapshots)."""
    snap = sonar.w3.provider.make_request("evm_snapshot", [])["result"]
    yield
    sonar.w3.provider.make_request("evm_revert", [snap])
    sonar.reset_nonce()
