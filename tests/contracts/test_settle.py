"""settle: a bounded round of verdicts from the queue head — shares, cap, forfeit pool, versions."""

import brownie
import pytest
from brownie import ZERO_ADDRESS

from conftest import (
    BOUNTY_CLOSED,
    BOUNTY_COMPLETED,
    BOUNTY_OPEN,
    NEW_MODEL,
    REWARD,
    STAKE,
    SUB_ACCEPTED,
    SUB_REJECTED,
    WINDOW,
    accept,
    refund,
    reject,
    vest_out,
)

CAP = REWARD * 3500 // 10_000


@pytest.fixture
def bounty(owner, post):
    return post(owner)


def settle(sonar, owner, bid, verdicts, score=0, digest=NEW_MODEL, codec=0x70):
    return sonar.settle(bid, verdicts, score, digest, codec, {"from": owner})


def queue(submit, bid, *miners):
    return [submit(bid, m) for m in miners]


# -------------------------------------------------------------------------------------------------
# accepted updates: reward, shares, cap
# -------------------------------------------------------------------------------------------------


def vesting(sonar, bid, miner):
    """(rewards, stakes) vesting for `miner` in bounty `bid`."""
    return tuple(sonar.getVesting(bid, miner)[:2])


def test_single_accepted_update_earns_the_improvements_share_plus_its_stake(sonar, owner, bounty, miner, submit):
    submit(bounty, miner)
    tx = settle(sonar, owner, bounty, [accept()], 820_000)
    # 0.02 of a 0.1 span: a fifth of the reward, under the cap; reward and stake vest
    assert tx.events["UpdateAccepted"]["reward"] == REWARD // 5
    assert vesting(sonar, bounty, miner) == (REWARD // 5, STAKE)
    assert sonar.credits(ZERO_ADDRESS, miner) == 0
    assert tx.return_value == REWARD // 5


def test_accepted_update_event_names_index_miner_share_and_reward(sonar, owner, bounty, miner, submit):
    submit(bounty, miner)
    ev = settle(sonar, owner, bounty, [accept()], 820_000).events["UpdateAccepted"]
    assert (ev["bountyId"], ev["index"], ev["miner"], ev["shareBps"], ev["reward"]) == (
        bounty, 0, miner, 10_000, REWARD // 5
    )


def test_round_with_an_accepted_update_records_a_model_version(sonar, owner, bounty, miner, miner2, submit):
    queue(submit, bounty, miner, miner2)
    tx = settle(sonar, owner, bounty, [accept(), refund()], 820_000)
    ev = tx.events["ModelVersionRecorded"]
    assert (ev["bountyId"], ev["version"], ev["digest"], ev["codec"], ev["score"]) == (
        bounty, 1, "0x" + NEW_MODEL.hex(), 0x70, 820_000
    )
    v = sonar.getModelVersion(bounty, 1)
    assert (v["digest"], v["codec"], v["score"], v["submission"]) == ("0x" + NEW_MODEL.hex(), 0x70, 820_000, 0)
    b = sonar.getBounty(bounty)
    assert (b["latestVersion"], b["bestScore"], b["nextEval"], b["pending"]) == (1, 820_000, 2, 0)


def test_round_settled_event_sums_up_the_round(sonar, owner, bounty, miner, miner2, submit):
    queue(submit, bounty, miner, miner2)
    ev = settle(sonar, owner, bounty, [accept(), reject()], 820_000).events["RoundSettled"]
    # the pot is the round's reward plus the stake forfeited in this very round
    assert (ev["bountyId"], ev["firstIndex"], ev["count"], ev["version"], ev["score"], ev["paid"]) == (
        bounty, 0, 2, 1, 820_000, REWARD // 5 + STAKE
    )


def test_accepted_shares_split_the_pot(sonar, owner, bounty, miner, miner2, miner3, submit):
    queue(submit, bounty, miner, miner2, miner3)
    tx = settle(sonar, owner, bounty, [accept(5000), accept(3000), accept(2000)], 850_000)
    pot = REWARD // 2
    assert [e["reward"] for e in tx.events["UpdateAccepted"]] == [pot // 2, pot * 3 // 10, pot // 5]
    assert vesting(sonar, bounty, miner2) == (pot * 3 // 10, STAKE)
    assert sonar.getSubmission(bounty, 2)["status"] == SUB_ACCEPTED


def test_one_update_earns_at_most_35_percent_of_the_reward(sonar, owner, bounty, miner, submit):
    submit(bounty, miner)
    tx = settle(sonar, owner, bounty, [accept()], 880_000)  # worth 80% of the reward
    assert tx.events["UpdateAccepted"]["reward"] == CAP
    assert sonar.getBounty(bounty)["escrow"] == REWARD - CAP


def test_what_the_cap_holds_back_stays_in_escrow_for_later_rounds(sonar, owner, bounty, miner, miner2, submit):
    submit(bounty, miner)
    settle(sonar, owner, bounty, [accept()], 880_000)
    submit(bounty, miner2)
    tx = settle(sonar, owner, bounty, [accept()], 890_000)
    assert tx.events["UpdateAccepted"]["reward"] == REWARD // 10
    assert sonar.getBounty(bounty)["escrow"] == REWARD - CAP - REWARD // 10


def test_a_single_update_reaching_the_target_earns_everything_left(sonar, owner, bounty, miner, submit):
    submit(bounty, miner)
    tx = settle(sonar, owner, bounty, [accept()], 900_000)
    assert tx.events["UpdateAccepted"]["reward"] == REWARD
    assert tx.events["TargetReached"]["score"] == 900_000
    b = sonar.getBounty(bounty)
    assert (b["status"], b["escrow"], b["paid"]) == (BOUNTY_COMPLETED, 0, REWARD)


def test_several_updates_reaching_the_target_are_each_capped(sonar, owner, bounty, miner, miner2, submit):
    queue(submit, bounty, miner, miner2)
    tx = settle(sonar, owner, bounty, [accept(5000), accept(5000)], 950_000)
    assert [e["reward"] for e in tx.events["UpdateAccepted"]] == [CAP, CAP]
    b = sonar.getBounty(bounty)
    assert (b["status"], b["escrow"]) == (BOUNTY_COMPLETED, REWARD - 2 * CAP)


def test_lower_is_better_bounty_rewards_a_lower_error(sonar, owner, miner, post, submit):
    bid = post(owner, higher=False, initial=5_000_000, target=1_000_000)
    submit(bid, miner)
    tx = settle(sonar, owner, bid, [accept()], 4_000_000)
    assert tx.events["UpdateAccepted"]["reward"] == REWARD // 4


def test_preview_reward_matches_the_single_update_reward(sonar, owner, bounty, miner, submit):
    assert sonar.previewReward(bounty, 820_000) == REWARD // 5
    assert sonar.previewReward(bounty, 800_000) == 0
    assert sonar.previewReward(bounty, 990_000) == REWARD


def test_erc20_round_credits_the_token(sonar, token, owner, miner, post, submit):
    bid = post(owner, token=token)
    submit(bid, miner)
    settle(sonar, owner, bid, [accept()], 820_000)
    assert vesting(sonar, bid, miner) == (REWARD // 5, STAKE)
    vest_out(sonar, bid, miner)
    assert sonar.credits(token, miner) == REWARD // 5 + STAKE
    assert sonar.credits(ZERO_ADDRESS, miner) == 0


# -------------------------------------------------------------------------------------------------
# rejected updates: refund or forfeit to the pool, never to the owner
# -------------------------------------------------------------------------------------------------


def test_refunded_rejection_returns_the_stake(sonar, owner, bounty, miner, submit):
    submit(bounty, miner)
    tx = settle(sonar, owner, bounty, [refund(2)])
    ev = tx.events["UpdateRejected"]
    assert (ev["bountyId"], ev["index"], ev["miner"], ev["reason"], ev["refunded"]) == (bounty, 0, miner, 2, True)
    assert sonar.credits(ZERO_ADDRESS, miner) == STAKE
    assert sonar.getBounty(bounty)["forfeitPool"] == 0


def test_forfeited_stake_joins_the_pool_not_the_owner(sonar, owner, bounty, miner, submit):
    submit(bounty, miner)
    tx = settle(sonar, owner, bounty, [reject(4)])
    assert tx.events["UpdateRejected"]["refunded"] is False
    assert sonar.getSubmission(bounty, 0)["status"] == SUB_REJECTED
    b = sonar.getBounty(bounty)
    assert (b["forfeitPool"], b["escrow"]) == (STAKE, REWARD)
    assert sonar.credits(ZERO_ADDRESS, miner) == sonar.credits(ZERO_ADDRESS, owner) == 0
    assert vesting(sonar, bounty, miner) == vesting(sonar, bounty, owner) == (0, 0)


def test_round_without_accepted_update_records_no_version(sonar, owner, bounty, miner, miner2, submit):
    queue(submit, bounty, miner, miner2)
    tx = settle(sonar, owner, bounty, [reject(), refund()], 999_999, b"\x00" * 32)
    assert "ModelVersionRecorded" not in tx.events
    ev = tx.events["RoundSettled"]
    assert (ev["version"], ev["score"], ev["paid"]) == (0, 0, 0)
    assert sonar.getBounty(bounty)["latestVersion"] == 0


def test_forfeit_pool_is_paid_to_a_later_accepted_contributor(sonar, owner, bounty, miner, miner2, miner3, submit):
    queue(submit, bounty, miner, miner2)
    settle(sonar, owner, bounty, [reject(), reject()])
    submit(bounty, miner3)
    tx = settle(sonar, owner, bounty, [accept()], 820_000)
    assert tx.events["UpdateAccepted"]["reward"] == REWARD // 5 + 2 * STAKE
    b = sonar.getBounty(bounty)
    # the pool pays first: the escrow gives only the round's reward
    assert (b["forfeitPool"], b["escrow"], b["paid"]) == (0, REWARD - REWARD // 5, REWARD // 5 + 2 * STAKE)


def test_capped_share_of_a_large_pool_leaves_the_rest_in_the_pool(sonar, owner, miner, miner2, miner3, post, submit):
    bid = post(owner, stake=REWARD // 2)
    queue(submit, bid, miner, miner2)
    settle(sonar, owner, bid, [reject(), reject()])  # pool: one reward's worth
    submit(bid, miner3)
    tx = settle(sonar, owner, bid, [accept()], 810_000)
    assert tx.events["UpdateAccepted"]["reward"] == CAP
    b = sonar.getBounty(bid)
    assert (b["forfeitPool"], b["escrow"]) == (REWARD - CAP, REWARD)


# -------------------------------------------------------------------------------------------------
# what a round may be
# -------------------------------------------------------------------------------------------------


def test_settle_takes_the_queue_in_order_from_the_head(sonar, owner, bounty, miner, miner2, miner3, submit):
    queue(submit, bounty, miner, miner2, miner3)
    settle(sonar, owner, bounty, [refund()])
    tx = settle(sonar, owner, bounty, [accept(), reject()], 820_000)
    assert [e["index"] for e in tx.events["UpdateAccepted"]] == [1]
    assert tx.events["UpdateRejected"]["index"] == 2
    assert tx.events["RoundSettled"]["firstIndex"] == 1


def test_empty_round_reverts(sonar, owner, bounty, miner, submit, E):
    submit(bounty, miner)
    with brownie.reverts(E.SonarInvalidRound(bounty, 0, 1)):
        settle(sonar, owner, bounty, [])


def test_round_longer_than_the_queue_reverts(sonar, owner, bounty, miner, submit, E):
    submit(bounty, miner)
    with brownie.reverts(E.SonarInvalidRound(bounty, 2, 1)):
        settle(sonar, owner, bounty, [refund(), refund()])


def test_round_of_33_reverts_and_32_settles(sonar, owner, bounty, miner, E):
    for n in range(33):
        sonar.submit(bounty, (n + 1).to_bytes(32, "big"), 0x55, 0, {"from": miner, "value": STAKE})
    with brownie.reverts(E.SonarInvalidRound(bounty, 33, 33)):
        settle(sonar, owner, bounty, [refund()] * 33)
    tx = settle(sonar, owner, bounty, [accept(10_000 - 31 * 100)] + [accept(100)] * 31, 810_000)
    assert len(tx.events["UpdateAccepted"]) == 32
    assert sonar.getBounty(bounty)["nextEval"] == 32


def test_settling_the_same_submission_twice_reverts(sonar, owner, bounty, miner, submit, E):
    submit(bounty, miner)
    settle(sonar, owner, bounty, [accept()], 820_000)
    with brownie.reverts(E.SonarInvalidRound(bounty, 1, 0)):
        settle(sonar, owner, bounty, [accept()], 830_000)
    assert vesting(sonar, bounty, miner) == (REWARD // 5, STAKE)


@pytest.mark.parametrize("shares,total", [([9999], 9999), ([5000, 5001], 10001), ([6000, 6000], 12000)])
def test_accepted_shares_not_summing_to_10000_revert(sonar, owner, bounty, miner, submit, E, shares, total):
    for _ in shares:
        submit(bounty, miner)
    with brownie.reverts(E.SonarInvalidShares(bounty, total)):
        settle(sonar, owner, bounty, [accept(s) for s in shares], 820_000)


def test_accepted_round_without_improvement_reverts(sonar, owner, bounty, miner, submit, E):
    submit(bounty, miner)
    with brownie.reverts(E.SonarNoImprovement(bounty, 800_000, 800_000)):
        settle(sonar, owner, bounty, [accept()], 800_000)


def test_accepted_round_with_zero_model_digest_reverts(sonar, owner, bounty, miner, submit, E):
    submit(bounty, miner)
    with brownie.reverts(E.SonarInvalidParams("modelDigest")):
        settle(sonar, owner, bounty, [accept()], 820_000, b"\x00" * 32)


@pytest.mark.parametrize("who", ["miner", "stranger", "owner2"])
def test_only_the_bounty_owner_settles(sonar, bounty, miner, stranger, owner2, submit, E, who):
    caller = {"miner": miner, "stranger": stranger, "owner2": owner2}[who]
    submit(bounty, miner)
    with brownie.reverts(E.SonarNotBountyOwner(bounty, caller)):
        settle(sonar, caller, bounty, [accept()], 900_000)


def test_settle_of_unknown_bounty_reverts(sonar, owner, E):
    with brownie.reverts(E.SonarUnknownBounty(9)):
        settle(sonar, owner, 9, [refund()])


def test_settle_past_the_heads_window_reverts(sonar, owner, bounty, miner, submit, sleep, E):
    """F-01: evaluation after the window is impossible, so the owner cannot keep a stake it let expire."""
    u = submit(bounty, miner)
    due = u.tx.timestamp + WINDOW
    sleep(WINDOW + 1)
    with brownie.reverts(E.SonarWindowClosed(bounty, 0, due)):
        settle(sonar, owner, bounty, [reject()])


def test_settle_in_the_last_seconds_of_the_window_works(sonar, owner, bounty, miner, submit, now):
    from brownie import chain

    u = submit(bounty, miner)
    chain.sleep(u.tx.timestamp + WINDOW - now() - 5)
    settle(sonar, owner, bounty, [refund()])
    assert sonar.getBounty(bounty)["nextEval"] == 1


def test_completed_bounty_still_settles_its_pending_queue(sonar, owner, bounty, miner, miner2, submit):
    queue(submit, bounty, miner, miner2)
    settle(sonar, owner, bounty, [accept()], 900_000)
    settle(sonar, owner, bounty, [refund()])
    b = sonar.getBounty(bounty)
    assert (b["status"], b["pending"]) == (BOUNTY_COMPLETED, 0)
    # a refunded stake is credited at once, even while the accepted one vests
    assert sonar.credits(ZERO_ADDRESS, miner2) == STAKE
    assert vesting(sonar, bounty, miner2) == (0, 0)


def test_closed_bounty_cannot_be_settled(sonar, owner, miner, post, submit, sleep, now, E):
    bid = post(owner, deadline=now() + 100)
    submit(bid, miner)
    sleep(WINDOW + 1)
    sonar.close(bid, {"from": owner})
    with brownie.reverts(E.SonarBountyNotOpen(bid, BOUNTY_CLOSED)):
        settle(sonar, owner, bid, [reject()])


def test_open_bounty_stays_open_below_target(sonar, owner, bounty, miner, submit):
    submit(bounty, miner)
    tx = settle(sonar, owner, bounty, [accept()], 899_999)
    assert "TargetReached" not in tx.events
    assert sonar.getBounty(bounty)["status"] == BOUNTY_OPEN


def test_settlement_matches_the_python_model(sonar, owner, miner, miner2, miner3, post, submit, model):
    bid = post(owner, stake=3 * 10**16)
    queue(submit, bid, miner, miner2, miner3)
    settle(sonar, owner, bid, [reject(), refund(), reject()])
    queue(submit, bid, miner, miner2, miner3)
    verdicts = [accept(7000), reject(), accept(3000)]
    b = sonar.getBounty(bid)
    expected = model(
        verdicts, reward=REWARD, escrow=b["escrow"], pool=b["forfeitPool"], stake=b["stake"], best=b["bestScore"],
        score=860_000, initial=800_000, target=900_000, higher=True,
    )
    tx = settle(sonar, owner, bid, verdicts, 860_000)
    assert [e["reward"] for e in tx.events["UpdateAccepted"]] == [expected["rewards"][0], expected["rewards"][2]]
    b = sonar.getBounty(bid)
    assert (b["escrow"], b["forfeitPool"], b["paid"]) == (expected["escrow"], expected["pool"], expected["paid"])
    # miner and miner3 were not paid in the first round (forfeits): their vesting is this round's
    assert [vesting(sonar, bid, m) for m in (miner, miner2, miner3)] == expected["vesting"]
    assert sonar.credits(ZERO_ADDRESS, miner2) == b["stake"]  # refunded in the first round
