"""Vesting with clawback: an accepted update's reward and stake vest (getVesting) until the bounty
can settle nothing more, then anyone may `release` them to the miner's credits; a forfeit with
`clawback` also takes back its miner's vesting rewards of the bounty (not its stakes) and burns
them at once: in the pool, an owner could win them back with a second address."""

import brownie
import pytest
from brownie import ZERO_ADDRESS, chain

from conftest import (
    BOUNTY_CLOSED,
    BOUNTY_COMPLETED,
    BURN,
    NEW_MODEL,
    REWARD,
    STAKE,
    WINDOW,
    accept,
    clawback,
    refund,
    reject,
)

@pytest.fixture
def bounty(owner, post):
    """An ETH bounty whose deadline is a week away."""
    return post(owner)


@pytest.fixture
def short(owner, post, now):
    """An ETH bounty whose deadline is 100 s away."""
    return post(owner, deadline=now() + 100)


def settle(sonar, owner, bid, verdicts, score=0):
    return sonar.settle(bid, verdicts, score, NEW_MODEL, 0x70, {"from": owner})


def vesting(sonar, bid, miner):
    """(rewards, stakes) vesting for `miner` in bounty `bid`."""
    return tuple(sonar.getVesting(bid, miner)[:2])


def releasable_after(sonar, bid):
    return sonar.getVesting(bid, ZERO_ADDRESS)[2]


def sleep_past(t):
    """Move the chain's clock past `t` (the next block's timestamp is > t)."""
    chain.mine()
    gap = t - chain[-1].timestamp
    if gap >= 0:
        chain.sleep(gap + 1)
        chain.mine()


def names(tx):
    """The names of a receipt's events, in the order they were emitted."""
    return [e.name for e in tx.events]


# -------------------------------------------------------------------------------------------------
# accepted updates vest
# -------------------------------------------------------------------------------------------------


def test_accepted_reward_and_stake_vest_and_credits_stay_unchanged(sonar, owner, bounty, miner, submit):
    submit(bounty, miner)
    held = sonar.balance()
    tx = settle(sonar, owner, bounty, [accept()], 820_000)
    deadline = sonar.getBounty(bounty)["deadline"]
    assert tuple(sonar.getVesting(bounty, miner)) == (REWARD // 5, STAKE, deadline)
    assert tx.events["UpdateAccepted"]["reward"] == REWARD // 5
    assert sonar.credits(ZERO_ADDRESS, miner) == 0
    assert sonar.balance() == held  # nothing left the contract


def test_vesting_adds_up_over_rounds_per_miner(sonar, owner, bounty, miner, miner2, submit):
    submit(bounty, miner)
    settle(sonar, owner, bounty, [accept()], 820_000)  # a fifth of the reward
    submit(bounty, miner)
    submit(bounty, miner2)
    settle(sonar, owner, bounty, [accept(5000), accept(5000)], 840_000)  # another fifth, halved
    assert vesting(sonar, bounty, miner) == (REWARD // 5 + REWARD // 10, 2 * STAKE)
    assert vesting(sonar, bounty, miner2) == (REWARD // 10, STAKE)
    assert sonar.getBounty(bounty)["paid"] == 2 * (REWARD // 5)
    assert sonar.credits(ZERO_ADDRESS, miner) == sonar.credits(ZERO_ADDRESS, miner2) == 0


def test_rejected_updates_vest_nothing(sonar, owner, bounty, miner, miner2, submit):
    submit(bounty, miner)
    submit(bounty, miner2)
    settle(sonar, owner, bounty, [refund(), reject()])
    assert vesting(sonar, bounty, miner) == vesting(sonar, bounty, miner2) == (0, 0)
    assert sonar.credits(ZERO_ADDRESS, miner) == STAKE  # a refunded stake is credited at once


# -------------------------------------------------------------------------------------------------
# releasableAfter
# -------------------------------------------------------------------------------------------------


def test_open_bounty_vests_until_its_deadline(sonar, owner, bounty, miner, submit):
    deadline = sonar.getBounty(bounty)["deadline"]
    assert releasable_after(sonar, bounty) == deadline
    submit(bounty, miner)  # pending, its window ends long before the deadline
    assert releasable_after(sonar, bounty) == deadline
    settle(sonar, owner, bounty, [accept()], 820_000)
    assert releasable_after(sonar, bounty) == deadline


def test_pending_submission_raises_the_end_to_its_window_end(sonar, owner, short, miner, miner2, submit):
    submit(short, miner)
    settle(sonar, owner, short, [accept()], 820_000)
    u = submit(short, miner2)
    deadline = sonar.getBounty(short)["deadline"]
    assert u.tx.timestamp + WINDOW > deadline
    assert releasable_after(sonar, short) == u.tx.timestamp + WINDOW
    settle(sonar, owner, short, [refund()])  # nothing pending any more: back to the deadline
    assert releasable_after(sonar, short) == deadline


def test_completed_bounty_with_nothing_pending_vests_no_longer(sonar, owner, bounty, miner, submit):
    submit(bounty, miner)
    settle(sonar, owner, bounty, [accept()], 900_000)
    assert sonar.getBounty(bounty)["status"] == BOUNTY_COMPLETED
    assert tuple(sonar.getVesting(bounty, miner)) == (REWARD, STAKE, 0)


def test_completed_bounty_with_a_pending_update_vests_until_its_window_end(sonar, owner, bounty, miner, miner2, submit):
    submit(bounty, miner)
    u = submit(bounty, miner2)
    settle(sonar, owner, bounty, [accept()], 900_000)
    assert sonar.getBounty(bounty)["status"] == BOUNTY_COMPLETED
    assert releasable_after(sonar, bounty) == u.tx.timestamp + WINDOW
    settle(sonar, owner, bounty, [refund()])
    assert releasable_after(sonar, bounty) == 0


def test_closed_bounty_vests_no_longer(sonar, owner, short, miner, submit, sleep):
    submit(short, miner)
    settle(sonar, owner, short, [accept()], 820_000)
    sleep(101)
    sonar.close(short, {"from": owner})
    assert sonar.getBounty(short)["status"] == BOUNTY_CLOSED
    assert tuple(sonar.getVesting(short, miner)) == (REWARD // 5, STAKE, 0)


def test_closed_bounty_with_an_expired_unreclaimed_submission_vests_no_longer(sonar, owner, short, miner, submit, sleep):
    submit(short, miner)
    settle(sonar, owner, short, [accept()], 820_000)
    u = submit(short, miner)  # never settled, never reclaimed
    sleep(u.tx.timestamp + WINDOW - chain.time() + 1)
    sonar.close(short, {"from": owner})
    b = sonar.getBounty(short)
    assert (b["status"], b["pending"]) == (BOUNTY_CLOSED, 1)
    assert tuple(sonar.getVesting(short, miner)) == (REWARD // 5, STAKE, 0)


def test_get_vesting_of_unknown_bounty_reverts(sonar, miner, E):
    with brownie.reverts(E.SonarUnknownBounty(9)):
        sonar.getVesting(9, miner)


# -------------------------------------------------------------------------------------------------
# release
# -------------------------------------------------------------------------------------------------


def test_release_before_the_deadline_reverts_still_vesting(sonar, owner, bounty, miner, submit, now, E):
    submit(bounty, miner)
    settle(sonar, owner, bounty, [accept()], 820_000)
    deadline = sonar.getBounty(bounty)["deadline"]
    with brownie.reverts(E.SonarStillVesting(bounty, deadline)):
        sonar.release(bounty, miner, {"from": miner})
    chain.sleep(deadline - now() - 5)  # the last seconds before the deadline
    with brownie.reverts(E.SonarStillVesting(bounty, deadline)):
        sonar.release(bounty, miner, {"from": miner})
    assert vesting(sonar, bounty, miner) == (REWARD // 5, STAKE)
    assert sonar.credits(ZERO_ADDRESS, miner) == 0


def test_release_after_the_deadline_credits_the_miner(sonar, owner, bounty, miner, submit):
    submit(bounty, miner)
    settle(sonar, owner, bounty, [accept()], 820_000)
    held = sonar.balance()
    deadline = sonar.getBounty(bounty)["deadline"]
    sleep_past(deadline)
    tx = sonar.release(bounty, miner, {"from": miner})
    ev = tx.events["Released"]
    assert (ev["bountyId"], ev["miner"], ev["rewards"], ev["stakes"]) == (bounty, miner, REWARD // 5, STAKE)
    assert tx.return_value == REWARD // 5 + STAKE
    assert sonar.credits(ZERO_ADDRESS, miner) == REWARD // 5 + STAKE
    assert tuple(sonar.getVesting(bounty, miner)) == (0, 0, deadline)
    assert sonar.balance() == held  # credited, not sent: withdraw sends it
    sonar.withdraw(ZERO_ADDRESS, {"from": miner})
    assert sonar.balance() == held - REWARD // 5 - STAKE


def test_release_while_a_pending_update_can_still_be_settled_reverts(
    sonar, owner, short, miner, miner2, submit, sleep, E
):
    submit(short, miner)
    settle(sonar, owner, short, [accept()], 820_000)
    u = submit(short, miner2)
    sleep(101)  # past the deadline, inside the pending update's window
    due = u.tx.timestamp + WINDOW
    with brownie.reverts(E.SonarStillVesting(short, due)):
        sonar.release(short, miner, {"from": miner})
    sleep_past(due)
    tx = sonar.release(short, miner, {"from": miner})  # nobody reclaimed it: its window is over all the same
    assert tx.return_value == REWARD // 5 + STAKE


def test_release_after_close_credits_the_miner(sonar, owner, short, miner, submit, sleep):
    submit(short, miner)
    settle(sonar, owner, short, [accept()], 820_000)
    sleep(101)
    sonar.close(short, {"from": owner})
    tx = sonar.release(short, miner, {"from": miner})
    assert tx.events["Released"]["rewards"] == REWARD // 5
    assert sonar.credits(ZERO_ADDRESS, miner) == REWARD // 5 + STAKE
    assert sonar.credits(ZERO_ADDRESS, owner) == REWARD - REWARD // 5  # the refund at close is unchanged


def test_completed_bounty_releases_before_its_deadline(sonar, owner, bounty, miner, submit):
    submit(bounty, miner)
    settle(sonar, owner, bounty, [accept()], 900_000)
    sonar.release(bounty, miner, {"from": miner})
    assert sonar.credits(ZERO_ADDRESS, miner) == REWARD + STAKE
    assert sonar.getBounty(bounty)["status"] == BOUNTY_COMPLETED


def test_completed_bounty_with_a_pending_update_reverts_until_it_is_settled(
    sonar, owner, bounty, miner, miner2, submit, E
):
    submit(bounty, miner)
    u = submit(bounty, miner2)
    settle(sonar, owner, bounty, [accept()], 900_000)
    with brownie.reverts(E.SonarStillVesting(bounty, u.tx.timestamp + WINDOW)):
        sonar.release(bounty, miner, {"from": miner})
    settle(sonar, owner, bounty, [refund()])
    sonar.release(bounty, miner, {"from": miner})
    assert sonar.credits(ZERO_ADDRESS, miner) == REWARD + STAKE


def test_second_release_reverts_nothing_to_release(sonar, owner, bounty, miner, submit, E):
    submit(bounty, miner)
    settle(sonar, owner, bounty, [accept()], 900_000)
    sonar.release(bounty, miner, {"from": miner})
    with brownie.reverts(E.SonarNothingToRelease(bounty, miner)):
        sonar.release(bounty, miner, {"from": miner})
    assert sonar.credits(ZERO_ADDRESS, miner) == REWARD + STAKE


def test_release_of_an_account_with_nothing_vesting_reverts(sonar, owner, bounty, miner, miner2, submit, E):
    submit(bounty, miner)
    submit(bounty, miner2)
    settle(sonar, owner, bounty, [accept(), refund()], 900_000)
    with brownie.reverts(E.SonarNothingToRelease(bounty, miner2)):
        sonar.release(bounty, miner2, {"from": miner2})
    with brownie.reverts(E.SonarNothingToRelease(bounty, owner)):
        sonar.release(bounty, owner, {"from": owner})


def test_release_of_unknown_bounty_reverts(sonar, miner, E):
    with brownie.reverts(E.SonarUnknownBounty(9)):
        sonar.release(9, miner, {"from": miner})


def test_anyone_may_release_and_the_credit_goes_to_the_miner(sonar, owner, bounty, miner, stranger, submit):
    submit(bounty, miner)
    settle(sonar, owner, bounty, [accept()], 900_000)
    tx = sonar.release(bounty, miner, {"from": stranger})
    assert tx.events["Released"]["miner"] == miner
    assert sonar.credits(ZERO_ADDRESS, miner) == REWARD + STAKE
    assert sonar.credits(ZERO_ADDRESS, stranger) == 0


def test_release_in_one_bounty_leaves_another_vesting(sonar, owner, owner2, miner, post, submit, E):
    a = post(owner)
    b = post(owner2)
    submit(a, miner)
    submit(b, miner)
    settle(sonar, owner, a, [accept()], 900_000)  # Completed: releasable at once
    settle(sonar, owner2, b, [accept()], 820_000)  # open for a week
    sonar.release(a, miner, {"from": miner})
    assert sonar.credits(ZERO_ADDRESS, miner) == REWARD + STAKE
    assert vesting(sonar, b, miner) == (REWARD // 5, STAKE)
    with brownie.reverts(E.SonarStillVesting(b, sonar.getBounty(b)["deadline"])):
        sonar.release(b, miner, {"from": miner})


# -------------------------------------------------------------------------------------------------
# clawback
# -------------------------------------------------------------------------------------------------


def test_clawback_burns_exactly_the_vesting_rewards(sonar, owner, bounty, miner, miner2, submit):
    submit(bounty, miner)
    submit(bounty, miner2)
    settle(sonar, owner, bounty, [accept(5000), accept(5000)], 840_000)  # a fifth each
    submit(bounty, miner)
    tx = settle(sonar, owner, bounty, [clawback()])
    ev = tx.events["RewardsClawedBack"]
    assert (ev["bountyId"], ev["index"], ev["miner"], ev["amount"]) == (bounty, 2, miner, REWARD // 5)
    # the rewards are burned, the accepted stake stays vesting; the forfeited stake joins the pool
    assert vesting(sonar, bounty, miner) == (0, STAKE)
    assert vesting(sonar, bounty, miner2) == (REWARD // 5, STAKE)
    b = sonar.getBounty(bounty)
    assert (b["forfeitPool"], b["escrow"], b["paid"], b["burned"]) == (
        STAKE, REWARD - 2 * (REWARD // 5), REWARD // 5, REWARD // 5)
    assert sonar.credits(ZERO_ADDRESS, BURN) == REWARD // 5
    assert sonar.credits(ZERO_ADDRESS, miner) == sonar.credits(ZERO_ADDRESS, owner) == 0
    ev = tx.events["UpdateRejected"]
    assert (ev["index"], ev["miner"], ev["reason"], ev["refunded"]) == (2, miner, 9, False)
    assert tx.events["RoundSettled"]["paid"] == 0


def test_clawback_event_comes_before_its_update_rejected(sonar, owner, bounty, miner, miner2, submit):
    submit(bounty, miner)
    settle(sonar, owner, bounty, [accept()], 820_000)
    submit(bounty, miner2)
    submit(bounty, miner)
    tx = settle(sonar, owner, bounty, [reject(), clawback()])
    assert names(tx) == ["UpdateRejected", "RewardsClawedBack", "UpdateRejected", "RoundSettled"]
    assert [tx.events[i]["index"] for i in range(3)] == [1, 2, 2]


def test_clawback_with_nothing_vesting_is_a_plain_forfeit(sonar, owner, bounty, miner, miner2, submit):
    submit(bounty, miner2)
    settle(sonar, owner, bounty, [accept()], 820_000)  # miner2 vests, miner has nothing
    submit(bounty, miner)
    tx = settle(sonar, owner, bounty, [clawback()])
    assert "RewardsClawedBack" not in tx.events
    assert names(tx) == ["UpdateRejected", "RoundSettled"]
    b = sonar.getBounty(bounty)
    assert (b["forfeitPool"], b["paid"], b["burned"]) == (STAKE, REWARD // 5, 0)
    assert vesting(sonar, bounty, miner2) == (REWARD // 5, STAKE)


def test_clawback_never_takes_vesting_stakes(sonar, owner, bounty, miner, miner2, submit):
    """Once Completed a bounty pays nothing more: an update accepted then vests its stake only,
    and a clawback of its miner finds no rewards to take."""
    submit(bounty, miner)
    submit(bounty, miner2)
    submit(bounty, miner2)
    settle(sonar, owner, bounty, [accept()], 900_000)  # Completed: all the escrow
    settle(sonar, owner, bounty, [accept()], 950_000)  # earns 0, its stake vests
    assert vesting(sonar, bounty, miner2) == (0, STAKE)
    tx = settle(sonar, owner, bounty, [clawback()])
    assert "RewardsClawedBack" not in tx.events
    assert vesting(sonar, bounty, miner2) == (0, STAKE)
    b = sonar.getBounty(bounty)
    assert (b["forfeitPool"], b["paid"]) == (STAKE, REWARD)


def test_pending_forfeit_of_a_completed_bounty_claws_back_the_whole_reward(sonar, owner, bounty, miner, submit):
    submit(bounty, miner)
    submit(bounty, miner)
    settle(sonar, owner, bounty, [accept()], 900_000)  # Completed: all the escrow
    tx = settle(sonar, owner, bounty, [clawback()])  # its second update, still pending
    assert tx.events["RewardsClawedBack"]["amount"] == REWARD
    assert vesting(sonar, bounty, miner) == (0, STAKE)
    b = sonar.getBounty(bounty)
    assert (b["forfeitPool"], b["paid"], b["escrow"], b["burned"]) == (STAKE, 0, 0, REWARD)


def test_clawed_back_rewards_never_reach_a_later_round(sonar, owner, bounty, miner, miner2, submit):
    """Not even through the pool: an owner that clawed back honest pay cannot win it back with a
    second address's accepted update; a later round's pot holds only the forfeited stake."""
    submit(bounty, miner)
    settle(sonar, owner, bounty, [accept()], 820_000)
    submit(bounty, miner)
    settle(sonar, owner, bounty, [clawback()])  # burns the fifth; the pool holds the stake
    submit(bounty, miner2)
    tx = settle(sonar, owner, bounty, [accept()], 830_000)
    pot = REWARD // 10 + STAKE  # the round's reward plus the pool
    assert tx.events["UpdateAccepted"]["reward"] == pot
    assert vesting(sonar, bounty, miner2) == (pot, STAKE)
    b = sonar.getBounty(bounty)
    # the pool pays first: the escrow gives only the round's reward
    assert (b["forfeitPool"], b["escrow"], b["paid"], b["burned"]) == (
        0, REWARD - REWARD // 5 - REWARD // 10, pot, REWARD // 5)


def test_clawed_back_rewards_stay_burned_at_close(sonar, owner, short, miner, submit, sleep):
    submit(short, miner)
    settle(sonar, owner, short, [accept()], 820_000)
    submit(short, miner)
    settle(sonar, owner, short, [clawback()])
    sleep(101)
    tx = sonar.close(short, {"from": owner})
    ev = tx.events["BountyClosed"]
    # the event's burned is the pool burned at close; the bounty's counts the clawback too
    assert (ev["paid"], ev["refunded"], ev["burned"]) == (0, REWARD - REWARD // 5, STAKE)
    assert sonar.getBounty(short)["burned"] == REWARD // 5 + STAKE
    assert sonar.credits(ZERO_ADDRESS, BURN) == REWARD // 5 + STAKE
    assert sonar.credits(ZERO_ADDRESS, owner) == REWARD - REWARD // 5  # the owner gains nothing
    tx = sonar.release(short, miner, {"from": miner})
    assert (tx.events["Released"]["rewards"], tx.events["Released"]["stakes"]) == (0, STAKE)
    assert sonar.balance() == sum(sonar.credits(ZERO_ADDRESS, a) for a in (owner, miner, BURN))


def test_a_late_forfeit_claws_back_what_an_early_round_paid(sonar, owner, short, miner, submit, sleep, E):
    """The miner cannot leave with an early reward before its later updates are judged: vesting
    outlasts the deadline while its next update is pending, and that update's forfeit takes it back."""
    submit(short, miner)
    settle(sonar, owner, short, [accept()], 820_000)
    u = submit(short, miner)
    sleep(101)
    with brownie.reverts(E.SonarStillVesting(short, u.tx.timestamp + WINDOW)):
        sonar.release(short, miner, {"from": miner})
    settle(sonar, owner, short, [clawback()])
    tx = sonar.release(short, miner, {"from": miner})
    assert tx.return_value == STAKE
    assert sonar.credits(ZERO_ADDRESS, miner) == STAKE


def test_clawback_in_the_same_round_takes_the_reward_just_accepted(sonar, owner, bounty, miner, submit):
    submit(bounty, miner)
    submit(bounty, miner)
    tx = settle(sonar, owner, bounty, [accept(), clawback()], 820_000)
    reward = REWARD // 5 + STAKE  # the pot holds the stake this round forfeits
    assert tx.events["UpdateAccepted"]["reward"] == reward
    assert tx.events["RewardsClawedBack"]["amount"] == reward
    assert tx.events["RoundSettled"]["paid"] == reward  # what the round's verdicts paid, before the clawback
    assert vesting(sonar, bounty, miner) == (0, STAKE)
    b = sonar.getBounty(bounty)
    assert (b["forfeitPool"], b["escrow"], b["paid"], b["burned"]) == (0, REWARD - REWARD // 5, 0, reward)


def test_clawback_ahead_of_the_miners_accepted_update_in_a_round_leaves_it(sonar, owner, bounty, miner, submit):
    """Verdicts apply in queue order: a clawback takes what vests when it is applied."""
    submit(bounty, miner)
    submit(bounty, miner)
    tx = settle(sonar, owner, bounty, [clawback(), accept()], 820_000)
    assert "RewardsClawedBack" not in tx.events
    assert vesting(sonar, bounty, miner) == (REWARD // 5 + STAKE, STAKE)


@pytest.mark.parametrize("verdict", [(10_000, 0, False, True), (0, 2, True, True), (10_000, 0, True, True)])
def test_clawback_on_an_accepted_or_refunded_verdict_reverts(sonar, owner, bounty, miner, submit, E, verdict):
    submit(bounty, miner)
    settle(sonar, owner, bounty, [accept()], 820_000)
    submit(bounty, miner)
    with brownie.reverts(E.SonarInvalidParams("clawback")):
        settle(sonar, owner, bounty, [verdict], 830_000)
    b = sonar.getBounty(bounty)
    assert (b["pending"], b["nextEval"], b["paid"]) == (1, 1, REWARD // 5)
    assert vesting(sonar, bounty, miner) == (REWARD // 5, STAKE)


def test_invalid_clawback_anywhere_in_a_round_reverts_the_round(sonar, owner, bounty, miner, miner2, submit, E):
    submit(bounty, miner)
    submit(bounty, miner2)
    with brownie.reverts(E.SonarInvalidParams("clawback")):
        settle(sonar, owner, bounty, [clawback(), (0, 2, True, True)])
    assert sonar.getBounty(bounty)["pending"] == 2


def test_clawback_touches_only_its_own_bounty(sonar, owner, owner2, miner, post, submit):
    a = post(owner)
    b = post(owner2)
    submit(a, miner)
    submit(b, miner)
    settle(sonar, owner, a, [accept()], 820_000)
    settle(sonar, owner2, b, [accept()], 830_000)
    submit(a, miner)
    tx = settle(sonar, owner, a, [clawback()])
    assert tx.events["RewardsClawedBack"]["amount"] == REWARD // 5
    assert vesting(sonar, a, miner) == (0, STAKE)
    assert vesting(sonar, b, miner) == (REWARD * 3 // 10, STAKE)
    other = sonar.getBounty(b)
    assert (other["forfeitPool"], other["paid"], other["escrow"]) == (0, REWARD * 3 // 10, REWARD - REWARD * 3 // 10)


def test_erc20_bounty_vests_claws_back_and_releases_in_its_token(
    sonar, token, owner, miner, miner2, post, submit, sleep, now
):
    bid = post(owner, token=token, deadline=now() + 100)
    submit(bid, miner)
    submit(bid, miner2)
    settle(sonar, owner, bid, [accept(5000), accept(5000)], 840_000)  # a fifth each
    assert vesting(sonar, bid, miner) == vesting(sonar, bid, miner2) == (REWARD // 5, STAKE)
    assert sonar.credits(token, miner) == sonar.credits(token, miner2) == 0
    submit(bid, miner)
    tx = settle(sonar, owner, bid, [clawback()])
    assert tx.events["RewardsClawedBack"]["amount"] == REWARD // 5
    assert sonar.getBounty(bid)["forfeitPool"] == STAKE
    assert sonar.credits(token, BURN) == REWARD // 5
    sleep(101)
    sonar.release(bid, miner, {"from": miner})
    sonar.release(bid, miner2, {"from": miner})
    assert sonar.credits(token, miner) == STAKE
    assert sonar.credits(token, miner2) == REWARD // 5 + STAKE
    assert sonar.credits(ZERO_ADDRESS, miner) == sonar.credits(ZERO_ADDRESS, miner2) == 0
    sonar.close(bid, {"from": owner})
    assert sonar.credits(token, BURN) == REWARD // 5 + STAKE
    before = token.balanceOf(miner2)
    sonar.withdraw(token, {"from": miner2})
    assert token.balanceOf(miner2) == before + REWARD // 5 + STAKE
    assert token.balanceOf(sonar) == sum(sonar.credits(token, a) for a in (owner, miner, BURN))
    assert sonar.balance() == 0

