"""submit: one transaction pays the stake, fills one queue slot, and names the CID in its event."""

import brownie
import pytest
from brownie import ZERO_ADDRESS

from conftest import BOUNTY_CLOSED, BOUNTY_COMPLETED, REWARD, STAKE, SUB_SUBMITTED, accept, digest_for


@pytest.fixture
def bounty(owner, post):
    return post(owner)


def test_submit_records_miner_base_version_time_and_status(sonar, bounty, miner, submit):
    u = submit(bounty, miner)
    s = sonar.getSubmission(bounty, u.index)
    assert (s["miner"], s["baseVersion"], s["status"]) == (miner, 0, SUB_SUBMITTED)
    assert s["submittedAt"] == u.tx.timestamp


def test_submit_emits_the_cid_and_base_version(sonar, bounty, miner):
    tx = sonar.submit(bounty, digest_for(9), 0x70, 0, {"from": miner, "value": STAKE})
    ev = tx.events["UpdateSubmitted"]
    assert (ev["bountyId"], ev["index"], ev["miner"]) == (bounty, 0, miner)
    assert (ev["digest"], ev["codec"], ev["baseVersion"]) == ("0x" + digest_for(9).hex(), 0x70, 0)


def test_submit_returns_consecutive_indices(sonar, bounty, miner, miner2, submit):
    assert [submit(bounty, m).index for m in (miner, miner2, miner)] == [0, 1, 2]
    b = sonar.getBounty(bounty)
    assert (b["submissions"], b["pending"], b["nextEval"]) == (3, 3, 0)


def test_submit_holds_the_stake(sonar, bounty, miner, submit):
    submit(bounty, miner)
    assert sonar.balance() == REWARD + STAKE


def test_submit_to_erc20_bounty_pulls_the_stake(sonar, token, owner, miner, post, submit):
    bid = post(owner, token=token)
    before = token.balanceOf(miner)
    submit(bid, miner)
    assert token.balanceOf(miner) == before - STAKE
    assert token.balanceOf(sonar) == REWARD + STAKE


def test_submit_erc20_with_eth_attached_reverts(sonar, token, owner, miner, post, E):
    bid = post(owner, token=token)
    with brownie.reverts(E.SonarWrongPayment(0, STAKE)):
        sonar.submit(bid, digest_for(1), 0x55, 0, {"from": miner, "value": STAKE})


@pytest.mark.parametrize("value", [0, STAKE - 1, STAKE + 1])
def test_submit_with_wrong_stake_reverts(sonar, bounty, miner, E, value):
    with brownie.reverts(E.SonarWrongPayment(STAKE, value)):
        sonar.submit(bounty, digest_for(1), 0x55, 0, {"from": miner, "value": value})


def test_submit_to_unknown_bounty_reverts(sonar, miner, E):
    with brownie.reverts(E.SonarUnknownBounty(5)):
        sonar.submit(5, digest_for(1), 0x55, 0, {"from": miner, "value": STAKE})


def test_submit_after_the_deadline_reverts(sonar, owner, miner, post, sleep, now, E):
    bid = post(owner, deadline=now() + 100)
    deadline = sonar.getBounty(bid)["deadline"]
    sleep(101)
    with brownie.reverts(E.SonarDeadlinePassed(bid, deadline)):
        sonar.submit(bid, digest_for(1), 0x55, 0, {"from": miner, "value": STAKE})


def test_submit_to_a_completed_bounty_reverts(sonar, owner, bounty, miner, submit, E):
    submit(bounty, miner)
    sonar.settle(bounty, [accept()], 900_000, b"\x33" * 32, 0x70, {"from": owner})
    with brownie.reverts(E.SonarBountyNotOpen(bounty, BOUNTY_COMPLETED)):
        sonar.submit(bounty, digest_for(1), 0x55, 1, {"from": miner, "value": STAKE})


def test_submit_to_a_closed_bounty_reverts(sonar, owner, miner, post, sleep, now, E):
    bid = post(owner, deadline=now() + 100)
    sleep(101)
    sonar.close(bid, {"from": owner})
    with brownie.reverts(E.SonarBountyNotOpen(bid, BOUNTY_CLOSED)):
        sonar.submit(bid, digest_for(1), 0x55, 0, {"from": miner, "value": STAKE})


def test_submit_from_a_version_not_yet_recorded_reverts(sonar, bounty, miner, E):
    with brownie.reverts(E.SonarUnknownVersion(bounty, 1)):
        sonar.submit(bounty, digest_for(1), 0x55, 1, {"from": miner, "value": STAKE})


def test_submit_from_the_latest_version_is_allowed(sonar, owner, bounty, miner, submit):
    submit(bounty, miner)
    sonar.settle(bounty, [accept()], 820_000, b"\x33" * 32, 0x70, {"from": owner})
    u = submit(bounty, miner, base=1)
    assert sonar.getSubmission(bounty, u.index)["baseVersion"] == 1


def test_submit_with_zero_digest_reverts(sonar, bounty, miner, E):
    with brownie.reverts(E.SonarInvalidParams("digest")):
        sonar.submit(bounty, b"\x00" * 32, 0x55, 0, {"from": miner, "value": STAKE})


def test_get_submission_beyond_the_queue_reverts(sonar, bounty, miner, submit, E):
    submit(bounty, miner)
    with brownie.reverts(E.SonarUnknownSubmission(bounty, 1)):
        sonar.getSubmission(bounty, 1)


def test_the_same_cid_submitted_twice_is_two_submissions(sonar, bounty, miner, stranger):
    """A CID copied from the mempool is just another submission, with its own stake, queued
    behind or ahead of the original; the owner rejects it after decrypting (its inner miner is
    not the submitter)."""
    sonar.submit(bounty, digest_for(7), 0x55, 0, {"from": stranger, "value": STAKE})
    sonar.submit(bounty, digest_for(7), 0x55, 0, {"from": miner, "value": STAKE})
    assert sonar.getSubmission(bounty, 0)["miner"] == stranger
    assert sonar.getSubmission(bounty, 1)["miner"] == miner
    assert sonar.credits(ZERO_ADDRESS, stranger) == 0
