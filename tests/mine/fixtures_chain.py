"""Chain fixtures: one real anvil per test session, a fresh Sonar deployment per test module."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from mine.chain import ZERO_ADDRESS, BountyParams, SonarClient, connect
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


def bounty_params(sonar: SonarClient, **overrides: Any) -> BountyParams:
    """An ETH bounty's parameters (1 ETH, stake 0.001, an hour to run, 10-minute window), with overrides."""
    values: dict[str, Any] = dict(
        token=ZERO_ADDRESS, reward=10**18, stake=10**15, deadline=sonar.now() + 3600, eval_window=600,
        initial_score=500_000, target_score=900_000, higher_is_better=True,
        validation_commitment=b"\x11" * 32, model_digest=b"\x22" * 32, model_codec=0,
    )
    values.update(overrides)
    return BountyParams(**values)
