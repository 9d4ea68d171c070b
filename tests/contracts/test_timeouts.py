"""The owner cannot stall: reclaimStake after two windows, skip of reclaimed / expired heads."""

import brownie
import pytest
from brownie import ZERO_ADDRESS

from conftest import (
    BOUNTY_CLOSED,
    REWARD,
    STAKE,
    SUB_ACCEPTED,
    SUB_COMMITTED,
    SUB_EXPIRED,
    SUB_RECLAIMED,
    SUB_REVEALED,
    WINDOW,
)

NEW_MODEL = b"\x33" * 32


@pytest.fixture
def bounty(owner, post):
    return post(owner)


def committed_at(sonar, bid, index):
    return sonar.getSubmission(bid, index)["committedAt"]


# -------------------------------------------------------------------------------------------------
# reclaimStake
# -------------------------------------------------------------------------------------------------


def test_reclaim_after_two_windows_credits_stake(sonar, bounty, miner, submit, sleep):
    submit(bounty, miner)
    sleep(2 * WINDOW + 1)
    tx = sonar.reclaimStake(bounty, 0, {"from": miner})
    assert sonar.credits(ZERO_ADDRESS, miner) == STAKE
    ev = tx.events["StakeReclaimed"]
    assert (ev["bountyId"], ev["index"], ev["miner"], ev["stake"]) == (bounty, 0, miner, STAKE)


def test_reclaim_updates_submission_and_queue(sonar, bounty, miner, submit, sleep):
    submit(bounty, miner)
    sleep(2 * WINDOW + 1)
    sonar.reclaimStake(bounty, 0, {"from": miner})
    assert sonar.getSubmission(bounty, 0)["status"] == SUB_RECLAIMED
    b = sonar.getBounty(bounty)
    assert (b["pending"], b["nextEval"], b["escrow"]) == (0, 1, REWARD)


def test_reclaim_inside_the_window_reverts(sonar, bounty, miner, submit, sleep, E):
    submit(bounty, miner)
    due = committed_at(sonar, bounty, 0) + 2 * WINDOW
    with brownie.reverts(E.SonarStillInWindow(bounty, due)):
        sonar.reclaimStake(bounty, 0, {"from": miner})
    sleep(2 * WINDOW - 60)
    with brownie.reverts(E.SonarStillInWindow(bounty, due)):
        sonar.reclaimStake(bounty, 0, {"from": miner})


def test_reclaim_by_other_account_reverts(sonar, bounty, miner, miner2, submit, sleep, E):
    submit(bounty, miner)
    sleep(2 * WINDOW + 1)
    with brownie.reverts(E.SonarNotSubmissionMiner(bounty, 0, miner2)):
        sonar.reclaimStake(bounty, 0, {"from": miner2})


def test_reclaim_of_unrevealed_update_reverts(sonar, bounty, miner, submit, sleep, E):
    submit(bounty, miner, reveal=False)
    sleep(2 * WINDOW + 1)
    with brownie.reverts(E.SonarWrongStatus(bounty, 0, SUB_COMMITTED)):
        sonar.reclaimStake(bounty, 0, {"from": miner})


def test_reclaim_of_accepted_update_reverts(sonar, owner, bounty, miner, submit, sleep, E):
    submit(bounty, miner)
    sonar.accept(bounty, 0, 850_000, NEW_MODEL, 0, {"from": owner})
    sleep(2 * WINDOW + 1)
    with brownie.reverts(E.SonarWrongStatus(bounty, 0, SUB_ACCEPTED)):
        sonar.reclaimStake(bounty, 0, {"from": miner})


def test_reclaim_twice_reverts(sonar, bounty, miner, submit, sleep, E):
    submit(bounty, miner)
    sleep(2 * WINDOW + 1)
    sonar.reclaimStake(bounty, 0, {"from": miner})
    with brownie.reverts(E.SonarWrongStatus(bounty, 0, SUB_RECLAIMED)):
        sonar.reclaimStake(bounty, 0, {"from": miner})


def test_owner_cannot_evaluate_a_reclaimed_update(sonar, owner, bounty, miner, submit, sleep, E):
    submit(bounty, miner)
    sleep(2 * WINDOW + 1)
    sonar.reclaimStake(bounty, 0, {"from": miner})
    with brownie.reverts(E.SonarNotNextInLine(bounty, 0, 1)):
        sonar.accept(bounty, 0, 850_000, NEW_MODEL, 0, {"from": owner})


def test_owner_may_still_evaluate_late_if_not_reclaimed(sonar, owner, bounty, miner, submit, sleep):
    submit(bounty, miner)
    sleep(5 * WINDOW)
    sonar.accept(bounty, 0, 850_000, NEW_MODEL, 0, {"from": owner})
    assert sonar.getSubmission(bounty, 0)["status"] == SUB_ACCEPTED


def test_reclaim_behind_the_head_leaves_the_head(sonar, owner, bounty, miner, miner2, submit, sleep, E):
    submit(bounty, miner)
    submit(bounty, miner2)
    sleep(2 * WINDOW + 1)
    sonar.reclaimStake(bounty, 1, {"from": miner2})
    b = sonar.getBounty(bounty)
    assert (b["nextEval"], b["pending"]) == (0, 1)
    sonar.accept(bounty, 0, 850_000, NEW_MODEL, 0, {"from": owner})
    # the reclaimed update is now the head: it cannot be evaluated, only skipped
    with brownie.reverts(E.SonarWrongStatus(bounty, 1, SUB_RECLAIMED)):
        sonar.accept(bounty, 1, 860_000, NEW_MODEL, 0, {"from": owner})


# -------------------------------------------------------------------------------------------------
# skip
# -------------------------------------------------------------------------------------------------


def test_skip_moves_past_reclaimed_head(sonar, owner, bounty, miner, miner2, stranger, submit, sleep):
    submit(bounty, miner)
    submit(bounty, miner2)
    sleep(2 * WINDOW + 1)
    sonar.reclaimStake(bounty, 1, {"from": miner2})
    sonar.accept(bounty, 0, 850_000, NEW_MODEL, 0, {"from": owner})
    tx = sonar.skip(bounty, {"from": stranger})
    assert tx.events["Skipped"]["bountyId"] == bounty
    assert tx.events["Skipped"]["index"] == 1
    b = sonar.getBounty(bounty)
    assert (b["nextEval"], b["pending"], b["escrow"]) == (2, 0, REWARD - REWARD // 2)


def test_skip_expired_unrevealed_head_forfeits_stake_to_escrow(sonar, bounty, miner, stranger, submit, sleep):
    submit(bounty, miner, reveal=False)
    sleep(WINDOW + 1)
    tx = sonar.skip(bounty, {"from": stranger})
    ev = tx.events["UpdateExpired"]
    assert (ev["bountyId"], ev["index"], ev["miner"], ev["stake"]) == (bounty, 0, miner, STAKE)
    assert sonar.getSubmission(bounty, 0)["status"] == SUB_EXPIRED
    b = sonar.getBounty(bounty)
    assert (b["nextEval"], b["pending"], b["escrow"]) == (1, 0, REWARD + STAKE)
    assert sonar.credits(ZERO_ADDRESS, miner) == 0


def test_skip_then_next_update_is_evaluable(sonar, owner, bounty, miner, miner2, submit, sleep):
    submit(bounty, miner, reveal=False)
    sleep(WINDOW + 1)
    submit(bounty, miner2)
    sonar.skip(bounty, {"from": miner2})
    sonar.accept(bounty, 1, 850_000, NEW_MODEL, 0, {"from": owner})


def test_skip_unrevealed_head_inside_reveal_window_reverts(sonar, bounty, miner, submit, sleep, E):
    submit(bounty, miner, reveal=False)
    sleep(WINDOW - 60)
    with brownie.reverts(E.SonarNothingToSkip(bounty)):
        sonar.skip(bounty, {"from": miner})


def test_skip_revealed_head_inside_its_window_reverts(sonar, bounty, miner, submit, sleep, E):
    submit(bounty, miner)
    sleep(2 * WINDOW - 60)
    with brownie.reverts(E.SonarNothingToSkip(bounty)):
        sonar.skip(bounty, {"from": miner})


def test_skip_revealed_head_past_due_returns_stake_to_its_miner(sonar, bounty, miner, stranger, submit, sleep):
    submit(bounty, miner)
    sleep(3 * WINDOW)
    tx = sonar.skip(bounty, {"from": stranger})
    ev = tx.events["StakeReclaimed"]
    assert (ev["bountyId"], ev["index"], ev["miner"], ev["stake"]) == (bounty, 0, miner, STAKE)
    assert sonar.credits(ZERO_ADDRESS, miner) == STAKE and sonar.credits(ZERO_ADDRESS, stranger) == 0
    assert sonar.getSubmission(bounty, 0)["status"] == SUB_RECLAIMED
    assert sonar.getBounty(bounty)["nextEval"] == 1 and sonar.getBounty(bounty)["pending"] == 0


def test_skip_empty_queue_reverts(sonar, bounty, miner, E):
    with brownie.reverts(E.SonarNothingToSkip(bounty)):
        sonar.skip(bounty, {"from": miner})


def test_skip_on_unknown_bounty_reverts(sonar, miner, E):
    with brownie.reverts(E.SonarUnknownBounty(4)):
        sonar.skip(4, {"from": miner})


def test_expired_update_cannot_be_revealed_after_skip(sonar, bounty, miner, submit, sleep, E):
    u = submit(bounty, miner, reveal=False)
    sleep(WINDOW + 1)
    sonar.skip(bounty, {"from": miner})
    with brownie.reverts(E.SonarWrongStatus(bounty, 0, SUB_EXPIRED)):
        sonar.reveal(*u.reveal_args(), {"from": miner})


def test_skip_expired_after_close_credits_owner(sonar, owner, miner, post, submit, sleep, now):
    bid = post(owner, deadline=now() + 100)
    submit(bid, miner, reveal=False)
    sleep(2 * WINDOW + 1)
    tx = sonar.close(bid, {"from": owner})
    assert tx.events["BountyClosed"]["refunded"] == REWARD
    sonar.skip(bid, {"from": owner})
    assert sonar.getBounty(bid)["status"] == BOUNTY_CLOSED
    assert sonar.getBounty(bid)["escrow"] == 0
    assert sonar.credits(ZERO_ADDRESS, owner) == REWARD + STAKE


def test_stalling_owner_cannot_keep_stakes_or_escrow(sonar, owner, miner, post, submit, sleep, now, E):
    """The owner never evaluates: the miner takes the stake back; the owner gets the escrow only
    after every window is over."""
    bid = post(owner, deadline=now() + 100)
    submit(bid, miner)
    sleep(101)
    due = committed_at(sonar, bid, 0) + 2 * WINDOW
    with brownie.reverts(E.SonarStillInWindow(bid, due)):
        sonar.close(bid, {"from": owner})
    sleep(2 * WINDOW)
    sonar.reclaimStake(bid, 0, {"from": miner})
    sonar.close(bid, {"from": owner})
    assert sonar.credits(ZERO_ADDRESS, miner) == STAKE
    assert sonar.credits(ZERO_ADDRESS, owner) == REWARD


def test_revealed_update_stays_revealed_until_evaluated_or_reclaimed(sonar, bounty, miner, submit, sleep):
    submit(bounty, miner)
    sleep(10 * WINDOW)
    assert sonar.getSubmission(bounty, 0)["status"] == SUB_REVEALED
    assert sonar.getBounty(bounty)["pending"] == 1
