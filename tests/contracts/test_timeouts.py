"""The owner cannot stall: past its window a submission's stake goes back to its miner
(reclaimStake, or skip by anyone), and the owner can no longer settle it (F-01)."""

import brownie
import pytest
from brownie import ZERO_ADDRESS

from conftest import (
    BOUNTY_CLOSED,
    NEW_MODEL,
    REWARD,
    STAKE,
    SUB_ACCEPTED,
    SUB_RECLAIMED,
    SUB_REJECTED,
    SUB_SUBMITTED,
    WINDOW,
    accept,
    refund,
    reject,
)


@pytest.fixture
def bounty(owner, post):
    return post(owner)


# -------------------------------------------------------------------------------------------------
# reclaimStake
# -------------------------------------------------------------------------------------------------


def test_reclaim_after_the_window_credits_the_stake(sonar, bounty, miner, submit, sleep):
    submit(bounty, miner)
    sleep(WINDOW + 1)
    tx = sonar.reclaimStake(bounty, 0, {"from": miner})
    assert sonar.credits(ZERO_ADDRESS, miner) == STAKE
    ev = tx.events["StakeReclaimed"]
    assert (ev["bountyId"], ev["index"], ev["miner"], ev["stake"]) == (bounty, 0, miner, STAKE)


def test_reclaim_updates_submission_and_queue(sonar, bounty, miner, submit, sleep):
    submit(bounty, miner)
    sleep(WINDOW + 1)
    sonar.reclaimStake(bounty, 0, {"from": miner})
    assert sonar.getSubmission(bounty, 0)["status"] == SUB_RECLAIMED
    b = sonar.getBounty(bounty)
    assert (b["pending"], b["nextEval"], b["escrow"], b["forfeitPool"]) == (0, 1, REWARD, 0)


def test_reclaim_inside_the_window_reverts(sonar, bounty, miner, submit, sleep, E):
    u = submit(bounty, miner)
    due = u.tx.timestamp + WINDOW
    with brownie.reverts(E.SonarStillInWindow(bounty, due)):
        sonar.reclaimStake(bounty, 0, {"from": miner})
    sleep(WINDOW - 60)
    with brownie.reverts(E.SonarStillInWindow(bounty, due)):
        sonar.reclaimStake(bounty, 0, {"from": miner})


def test_reclaim_by_another_account_reverts(sonar, bounty, miner, miner2, submit, sleep, E):
    submit(bounty, miner)
    sleep(WINDOW + 1)
    with brownie.reverts(E.SonarNotSubmissionMiner(bounty, 0, miner2)):
        sonar.reclaimStake(bounty, 0, {"from": miner2})


def test_reclaim_of_a_submission_never_made_reverts(sonar, bounty, miner, E):
    with brownie.reverts(E.SonarNotSubmissionMiner(bounty, 3, miner)):
        sonar.reclaimStake(bounty, 3, {"from": miner})


def test_reclaim_of_unknown_bounty_reverts(sonar, miner, E):
    with brownie.reverts(E.SonarUnknownBounty(4)):
        sonar.reclaimStake(4, 0, {"from": miner})


def test_reclaim_of_an_accepted_update_reverts(sonar, owner, bounty, miner, submit, sleep, E):
    submit(bounty, miner)
    sonar.settle(bounty, [accept()], 820_000, NEW_MODEL, 0, {"from": owner})
    sleep(WINDOW + 1)
    with brownie.reverts(E.SonarWrongStatus(bounty, 0, SUB_ACCEPTED)):
        sonar.reclaimStake(bounty, 0, {"from": miner})


def test_reclaim_of_a_forfeited_stake_reverts(sonar, owner, bounty, miner, submit, sleep, E):
    submit(bounty, miner)
    sonar.settle(bounty, [reject()], 0, NEW_MODEL, 0, {"from": owner})
    sleep(WINDOW + 1)
    with brownie.reverts(E.SonarWrongStatus(bounty, 0, SUB_REJECTED)):
        sonar.reclaimStake(bounty, 0, {"from": miner})


def test_reclaim_twice_reverts(sonar, bounty, miner, submit, sleep, E):
    submit(bounty, miner)
    sleep(WINDOW + 1)
    sonar.reclaimStake(bounty, 0, {"from": miner})
    with brownie.reverts(E.SonarWrongStatus(bounty, 0, SUB_RECLAIMED)):
        sonar.reclaimStake(bounty, 0, {"from": miner})
    assert sonar.credits(ZERO_ADDRESS, miner) == STAKE


def test_owner_cannot_settle_a_reclaimed_update(sonar, owner, bounty, miner, submit, sleep, E):
    submit(bounty, miner)
    sleep(WINDOW + 1)
    sonar.reclaimStake(bounty, 0, {"from": miner})
    with brownie.reverts(E.SonarInvalidRound(bounty, 1, 0)):
        sonar.settle(bounty, [reject()], 0, NEW_MODEL, 0, {"from": owner})


def test_owner_front_running_a_reclaim_with_a_forfeit_reverts(sonar, owner, bounty, miner, submit, sleep, E):
    """F-01: once the window is over the owner's settle fails, whoever's transaction comes first."""
    u = submit(bounty, miner)
    sleep(WINDOW + 1)
    with brownie.reverts(E.SonarWindowClosed(bounty, 0, u.tx.timestamp + WINDOW)):
        sonar.settle(bounty, [reject()], 0, NEW_MODEL, 0, {"from": owner})
    sonar.reclaimStake(bounty, 0, {"from": miner})
    assert sonar.credits(ZERO_ADDRESS, miner) == STAKE


def test_reclaim_behind_the_head_leaves_the_head(sonar, owner, bounty, miner, miner2, submit, sleep):
    submit(bounty, miner)
    submit(bounty, miner2)
    sleep(WINDOW + 1)
    sonar.reclaimStake(bounty, 1, {"from": miner2})
    b = sonar.getBounty(bounty)
    assert (b["nextEval"], b["pending"]) == (0, 1)
    assert sonar.getSubmission(bounty, 0)["status"] == SUB_SUBMITTED


# -------------------------------------------------------------------------------------------------
# skip
# -------------------------------------------------------------------------------------------------


def test_skip_an_expired_head_returns_the_stake_to_its_miner(sonar, bounty, miner, stranger, submit, sleep):
    submit(bounty, miner)
    sleep(WINDOW + 1)
    tx = sonar.skip(bounty, {"from": stranger})
    assert tx.events["StakeReclaimed"]["miner"] == miner
    assert (tx.events["Skipped"]["bountyId"], tx.events["Skipped"]["index"]) == (bounty, 0)
    assert sonar.credits(ZERO_ADDRESS, miner) == STAKE
    assert sonar.credits(ZERO_ADDRESS, stranger) == 0
    b = sonar.getBounty(bounty)
    assert (b["nextEval"], b["pending"], b["forfeitPool"]) == (1, 0, 0)


def test_reclaiming_the_head_moves_the_queue_past_it(sonar, bounty, miner, submit, sleep):
    submit(bounty, miner)
    sleep(WINDOW + 1)
    sonar.reclaimStake(bounty, 0, {"from": miner})
    assert sonar.getBounty(bounty)["nextEval"] == 1


def test_skip_moves_past_a_reclaimed_item_behind_the_head(sonar, owner, bounty, miner, miner2, stranger, submit, sleep):
    submit(bounty, miner)
    submit(bounty, miner2)
    sleep(WINDOW + 1)
    sonar.reclaimStake(bounty, 1, {"from": miner2})
    sonar.skip(bounty, {"from": stranger})  # index 0: expired, stake back to miner
    tx = sonar.skip(bounty, {"from": stranger})  # index 1: already reclaimed
    assert "StakeReclaimed" not in tx.events
    assert tx.events["Skipped"]["index"] == 1
    assert sonar.credits(ZERO_ADDRESS, miner2) == STAKE
    assert sonar.getBounty(bounty)["nextEval"] == 2


def test_skip_inside_the_heads_window_reverts(sonar, bounty, miner, submit, E):
    submit(bounty, miner)
    with brownie.reverts(E.SonarNothingToSkip(bounty)):
        sonar.skip(bounty, {"from": miner})


def test_skip_an_empty_queue_reverts(sonar, bounty, E):
    with brownie.reverts(E.SonarNothingToSkip(bounty)):
        sonar.skip(bounty)


def test_skip_on_unknown_bounty_reverts(sonar, miner, E):
    with brownie.reverts(E.SonarUnknownBounty(3)):
        sonar.skip(3, {"from": miner})


def test_after_skip_the_next_update_is_settled(sonar, owner, bounty, miner, miner2, submit, sleep):
    submit(bounty, miner)
    sleep(WINDOW - 100)
    submit(bounty, miner2)
    sleep(101)
    sonar.skip(bounty, {"from": miner2})
    tx = sonar.settle(bounty, [accept()], 820_000, NEW_MODEL, 0, {"from": owner})
    assert tx.events["UpdateAccepted"]["miner"] == miner2


def test_skip_after_close_still_returns_the_stake(sonar, owner, miner, post, submit, sleep, now):
    bid = post(owner, deadline=now() + 100)
    submit(bid, miner)
    sleep(WINDOW + 1)
    sonar.close(bid, {"from": owner})
    assert sonar.getBounty(bid)["status"] == BOUNTY_CLOSED
    sonar.skip(bid, {"from": owner})
    assert sonar.credits(ZERO_ADDRESS, miner) == STAKE
    assert sonar.credits(ZERO_ADDRESS, owner) == REWARD


def test_stalling_owner_keeps_no_stake(sonar, owner, miner, miner2, post, submit, sleep, now):
    bid = post(owner, deadline=now() + 100)
    submit(bid, miner)
    submit(bid, miner2)
    sleep(WINDOW + 1)
    sonar.close(bid, {"from": owner})
    sonar.reclaimStake(bid, 0, {"from": miner})
    sonar.reclaimStake(bid, 1, {"from": miner2})
    assert sonar.credits(ZERO_ADDRESS, owner) == REWARD
    assert sonar.credits(ZERO_ADDRESS, miner) == sonar.credits(ZERO_ADDRESS, miner2) == STAKE
    assert sonar.balance() == REWARD + 2 * STAKE
