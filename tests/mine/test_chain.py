"""SonarClient against a real anvil: views, transactions, decoded custom errors, connection errors."""

from __future__ import annotations

import pytest

from mine.chain import BountyParams, BountyStatus, SonarClient, SubmissionStatus, ZERO_ADDRESS
from mine.devnet import dev_account, free_port
from mine.errors import ChainError, ChainUnreachableError, InsufficientFundsError
from mine.chain import commitment


def _params(sonar: SonarClient, **overrides) -> BountyParams:
    values = dict(
        token=ZERO_ADDRESS, reward=10**18, stake=10**15, deadline=sonar.now() + 3600, eval_window=600,
        initial_score=500_000, target_score=900_000, higher_is_better=True,
        validation_commitment=b"\x11" * 32, model_digest=b"\x22" * 32, model_codec=0,
    )
    values.update(overrides)
    return BountyParams(**values)


def test_post_bounty_returns_increasing_ids(sonar: SonarClient, chain_snapshot: None) -> None:
    first, _ = sonar.post_bounty(_params(sonar))
    second, _ = sonar.post_bounty(_params(sonar))
    assert second == first + 1
    bounty = sonar.bounty(second)
    assert bounty.status == BountyStatus.OPEN and bounty.escrow == 10**18 and bounty.owner == dev_account(0).address


def test_commit_and_reveal_match_the_contract_commitment(sonar: SonarClient, chain_snapshot: None) -> None:
    bid, _ = sonar.post_bounty(_params(sonar))
    miner = sonar.with_account(dev_account(1))
    digest, salt = b"\x33" * 32, b"\x44" * 32
    local = commitment(bid, miner.account.address, digest, 0x70, 0, salt)
    assert local == sonar.commitment_of(bid, miner.account.address, digest, 0x70, 0, salt)
    index, _ = miner.commit(bid, local, stake=10**15)
    miner.reveal(bid, index, digest, 0x70, 0, salt)
    sub = sonar.submission(bid, index)
    assert sub.status == SubmissionStatus.REVEALED and sub.digest == digest and sub.codec == 0x70


def test_revert_is_decoded_to_the_custom_error(sonar: SonarClient, chain_snapshot: None) -> None:
    with pytest.raises(ChainError, match=r"SonarUnknownBounty\(bountyId=999\)"):
        sonar.bounty(999)
    with pytest.raises(ChainError, match=r"SonarInvalidParams"):
        sonar.post_bounty(_params(sonar, target_score=100))


def test_insufficient_funds_is_its_own_error(sonar: SonarClient, chain_snapshot: None) -> None:
    from eth_account import Account

    poor = sonar.with_account(Account.create())
    with pytest.raises(InsufficientFundsError, match="cannot pay"):
        poor.post_bounty(_params(sonar))


def test_unreachable_chain_says_so() -> None:
    with pytest.raises(ChainUnreachableError, match="no Ethereum node answers"):
        SonarClient.open(f"http://127.0.0.1:{free_port()}", None)


def test_wrong_chain_id_and_missing_contract_are_refused(sonar: SonarClient, rpc_url: str) -> None:
    with pytest.raises(ChainError, match="is chain 31337"):
        SonarClient.open(rpc_url, sonar.address, expected_chain_id=1)
    with pytest.raises(ChainError, match="no contract at"):
        SonarClient.open(rpc_url, "0x000000000000000000000000000000000000dEaD")


def test_erc20_bounty_is_approved_and_pulled(sonar: SonarClient, chain_snapshot: None) -> None:
    from mine.chain import load_artifact

    artifact = load_artifact("TestToken")
    w3, owner = sonar.w3, dev_account(0)
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    tx = factory.constructor().build_transaction({"from": owner.address, "nonce": w3.eth.get_transaction_count(owner.address), "gasPrice": 0})
    token_address = w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(owner.sign_transaction(tx).raw_transaction))["contractAddress"]
    token = w3.eth.contract(address=token_address, abi=artifact["abi"])
    for who in (owner, dev_account(1)):
        tx = token.functions.mint(who.address, 10**20).build_transaction({"from": owner.address, "nonce": w3.eth.get_transaction_count(owner.address), "gasPrice": 0})
        w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(owner.sign_transaction(tx).raw_transaction))
    sonar.reset_nonce()
    bid, _ = sonar.post_bounty(_params(sonar, token=token_address, reward=5 * 10**18))
    assert token.functions.balanceOf(sonar.address).call() == 5 * 10**18
    miner = sonar.with_account(dev_account(1))
    miner.commit(bid, b"\x05" * 32, stake=10**15, token=token_address)
    assert token.functions.balanceOf(sonar.address).call() == 5 * 10**18 + 10**15
