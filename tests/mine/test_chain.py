"""SonarClient against a real anvil: views, transactions, decoded custom errors, connection errors."""

from __future__ import annotations

import pytest

from mine import chain as chain_module
from mine.chain import BountyParams, BountyStatus, SonarClient, SubmissionStatus, Verdict, ZERO_ADDRESS
from mine.devnet import dev_account, free_port
from mine.errors import ChainError, ChainUnreachableError, InsufficientFundsError
from tests.mine.fixtures_chain import bounty_params


def _params(sonar: SonarClient, **overrides) -> BountyParams:
    return bounty_params(sonar, **overrides)


def test_post_bounty_returns_increasing_ids(sonar: SonarClient, chain_snapshot: None) -> None:
    first, _ = sonar.post_bounty(_params(sonar))
    second, _ = sonar.post_bounty(_params(sonar))
    assert second == first + 1
    bounty = sonar.bounty(second)
    assert bounty.status == BountyStatus.OPEN and bounty.escrow == 10**18 and bounty.owner == dev_account(0).address


def test_submit_records_the_submission_and_emits_the_cid(sonar: SonarClient, chain_snapshot: None) -> None:
    bid, _ = sonar.post_bounty(_params(sonar))
    miner = sonar.with_account(dev_account(1))
    digest = b"\x33" * 32
    index, receipt = miner.submit(bid, digest, 0x70, 0, stake=10**15)
    sub = sonar.submission(bid, index)
    assert sub.status == SubmissionStatus.SUBMITTED and sub.miner == miner.account.address and sub.base_version == 0
    (event,) = sonar.receipt_events(receipt, "UpdateSubmitted")
    assert event["args"]["digest"] == digest and event["args"]["codec"] == 0x70


def test_settle_pays_the_accepted_and_refunds_the_honest_rejected(sonar: SonarClient, chain_snapshot: None) -> None:
    bid, _ = sonar.post_bounty(_params(sonar))
    a, b = sonar.with_account(dev_account(1)), sonar.with_account(dev_account(2))
    a.submit(bid, b"\x01" * 32, 0x55, 0, stake=10**15)
    b.submit(bid, b"\x02" * 32, 0x55, 0, stake=10**15)
    sonar.settle(bid, [Verdict(share_bps=10_000), Verdict(reason=2, refund=True)], 600_000, b"\x09" * 32, 0x70)
    bounty = sonar.bounty(bid)
    # improvement 0.1 of a 0.4 span: a quarter of the reward, under the 35% cap
    assert bounty.paid == 10**18 // 4 and bounty.latest_version == 1 and bounty.next_eval == 2
    # the accepted reward and stake vest until the bounty ends; the refund is credited at once
    vest = sonar.vesting(bid, a.account.address)
    assert (vest.rewards, vest.stakes, vest.releasable_after) == (10**18 // 4, 10**15, bounty.deadline)
    assert sonar.credits(a.account.address) == 0
    assert sonar.credits(b.account.address) == 10**15
    assert sonar.model_version(bid, 1).digest == b"\x09" * 32
    assert sonar.submission(bid, 1).status == SubmissionStatus.REJECTED
    with pytest.raises(ChainError, match=rf"SonarStillVesting\(bountyId={bid}, until={bounty.deadline}\)"):
        a.release(bid)
    sonar.w3.provider.make_request("evm_increaseTime", [3601])
    sonar.w3.provider.make_request("evm_mine", [])
    (released,) = sonar.receipt_events(b.release(bid, a.account.address), "Released")  # anyone may release
    assert (released["args"]["rewards"], released["args"]["stakes"]) == (10**18 // 4, 10**15)
    assert sonar.credits(a.account.address) == 10**15 + 10**18 // 4 and sonar.vesting(bid, a.account.address).total == 0


def test_a_clawback_forfeit_burns_the_vesting_rewards(sonar: SonarClient, chain_snapshot: None) -> None:
    from mine.overview import earnings

    bid, _ = sonar.post_bounty(_params(sonar))
    a = sonar.with_account(dev_account(1))
    a.submit(bid, b"\x01" * 32, 0x55, 0, stake=10**15)
    sonar.settle(bid, [Verdict(share_bps=10_000)], 600_000, b"\x09" * 32, 0x70)
    a.submit(bid, b"\x02" * 32, 0x55, 1, stake=10**15)
    receipt = sonar.settle(bid, [Verdict(reason=9, clawback=True)])
    (clawed,) = sonar.receipt_events(receipt, "RewardsClawedBack")
    assert clawed["args"]["amount"] == 10**18 // 4 and clawed["args"]["index"] == 1
    bounty = sonar.bounty(bid)  # burned at once: never in the pool an owner's second address could win
    assert (bounty.forfeit_pool, bounty.paid, bounty.burned) == (10**15, 0, 10**18 // 4)
    assert sonar.credits(chain_module.BURN_ADDRESS) == 10**18 // 4
    vest = sonar.vesting(bid, a.account.address)
    assert (vest.rewards, vest.stakes) == (0, 10**15)  # the accepted update's stake stays the miner's
    assert [total for _, total in earnings(sonar, a.account.address)] == [10**18 // 4, 0]
    with pytest.raises(ValueError, match="forfeited verdict only"):
        Verdict(share_bps=10_000, clawback=True)


def test_settle_refuses_an_empty_or_oversized_round_before_sending(sonar: SonarClient) -> None:
    with pytest.raises(ChainError, match="1 to 32 verdicts"):
        sonar.settle(1, [])
    with pytest.raises(ChainError, match="1 to 32 verdicts"):
        sonar.settle(1, [Verdict(refund=True)] * 33)


def test_client_constants_match_the_contract(sonar: SonarClient) -> None:
    for name in ("MIN_EVAL_WINDOW", "MAX_EVAL_WINDOW", "MAX_REWARD", "MAX_ROUND", "MAX_SHARE_BPS", "BPS", "SCORE_SCALE"):
        assert getattr(sonar.contract.functions, name)().call() == getattr(chain_module, name), name
    assert sonar.contract.functions.BURN_ADDRESS().call() == chain_module.BURN_ADDRESS


def test_audit_reveal_then_close_after_the_deadline(sonar: SonarClient, chain_snapshot: None) -> None:
    bid, _ = sonar.post_bounty(_params(sonar, auditable=True))
    with pytest.raises(ChainError, match="SonarAuditMismatch"):
        sonar.reveal_audit(bid, b"\x12" * 32, 0x55)
    sonar.reveal_audit(bid, b"\x11" * 32, 0x55)
    sonar.w3.provider.make_request("evm_increaseTime", [3601])
    sonar.w3.provider.make_request("evm_mine", [])
    sonar.close(bid)
    bounty = sonar.bounty(bid)
    assert bounty.status == BountyStatus.CLOSED and bounty.audit_revealed
    assert sonar.credits(dev_account(0).address) >= 10**18


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


def test_anvil_on_a_port_another_process_took_moves_to_another(rpc_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The port picked as free is taken (here: by the session's own anvil) before anvil binds it: the
    probe reaches the other node, which must not pass for the new chain."""
    from web3 import Web3

    from mine import devnet

    taken = int(rpc_url.rsplit(":", 1)[1])
    picks = iter([taken])
    monkeypatch.setattr(devnet, "free_port", lambda: next(picks, None) or free_port())
    other = Web3(Web3.HTTPProvider(rpc_url))
    other.provider.make_request("anvil_mine", [3, 0])
    with devnet.anvil(accounts=2) as url:
        assert url != rpc_url
        assert Web3(Web3.HTTPProvider(url)).eth.block_number == 0 < other.eth.block_number


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
    miner.submit(bid, b"\x05" * 32, 0x55, 0, stake=10**15, token=token_address)
    assert token.functions.balanceOf(sonar.address).call() == 5 * 10**18 + 10**15
