"""accept / reject: queue order, improvement check, reward math, payouts, model versions."""

import brownie
import pytest

from conftest import (
    BOUNTY_CLOSED,
    BOUNTY_COMPLETED,
    BOUNTY_OPEN,
    REWARD,
    STAKE,
    SUB_ACCEPTED,
    SUB_COMMITTED,
    SUB_REJECTED,
    SUB_REVEALED,
    WINDOW,
)

NEW_MODEL = b"\x33" * 32


def model(n):
    return n.to_bytes(32, "big")


@pytest.fixture
def bounty(owner, post):
    """An ETH bounty: accuracy 0.800000 -> 0.900000, reward 1 ETH, stake 0.01 ETH."""
    return post(owner)


# -------------------------------------------------------------------------------------------------
# accept
# -------------------------------------------------------------------------------------------------


def test_accept_credits_reward_plus_stake(sonar, owner, bounty, miner, submit):
    submit(bounty, miner)
    sonar.accept(bounty, 0, 850_000, NEW_MODEL, 0x70, {"from": owner})
    assert sonar.credits(brownie.ZERO_ADDRESS, miner) == REWARD // 2 + STAKE


def test_accept_returns_and_emits_reward(sonar, owner, bounty, miner, submit):
    submit(bounty, miner)
    tx = sonar.accept(bounty, 0, 825_000, NEW_MODEL, 0x70, {"from": owner})
    assert tx.return_value == REWARD // 4
    ev = tx.events["UpdateAccepted"]
    assert (ev["bountyId"], ev["index"], ev["miner"]) == (bounty, 0, miner)
    assert (ev["score"], ev["version"], ev["reward"]) == (825_000, 1, REWARD // 4)
    assert "TargetReached" not in tx.events


def test_accept_updates_bounty_state(sonar, owner, bounty, miner, submit):
    submit(bounty, miner)
    sonar.accept(bounty, 0, 825_000, NEW_MODEL, 0x70, {"from": owner})
    b = sonar.getBounty(bounty)
    assert b["bestScore"] == 825_000
    assert b["latestVersion"] == 1
    assert b["nextEval"] == 1
    assert b["pending"] == 0
    assert b["escrow"] == REWARD - REWARD // 4
    assert b["paid"] == REWARD // 4
    assert b["status"] == BOUNTY_OPEN
    assert sonar.getSubmission(bounty, 0)["status"] == SUB_ACCEPTED


def test_accept_records_model_version(sonar, owner, bounty, miner, miner2, submit):
    submit(bounty, miner)
    submit(bounty, miner2)
    sonar.accept(bounty, 0, 810_000, model(1), 0x70, {"from": owner})
    tx = sonar.accept(bounty, 1, 820_000, model(2), 0, {"from": owner})
    v = sonar.getModelVersion(bounty, 2)
    assert v["digest"] == "0x" + model(2).hex()
    assert (v["codec"], v["score"], v["submission"], v["createdAt"]) == (0, 820_000, 1, tx.timestamp)
    ev = tx.events["ModelVersionRecorded"]
    assert (ev["bountyId"], ev["version"], ev["codec"], ev["score"]) == (bounty, 2, 0, 820_000)
    assert sonar.getModelVersion(bounty, 1)["score"] == 810_000
    with brownie.reverts():
        sonar.getModelVersion(bounty, 3)


def test_accept_only_the_head_of_the_queue(sonar, owner, bounty, miner, miner2, submit, E):
    submit(bounty, miner)
    submit(bounty, miner2)
    with brownie.reverts(E.SonarNotNextInLine(bounty, 1, 0)):
        sonar.accept(bounty, 1, 850_000, NEW_MODEL, 0, {"from": owner})


def test_accept_then_next_in_line_moves_on(sonar, owner, bounty, miner, miner2, submit, E):
    submit(bounty, miner)
    submit(bounty, miner2)
    sonar.accept(bounty, 0, 810_000, NEW_MODEL, 0, {"from": owner})
    with brownie.reverts(E.SonarNotNextInLine(bounty, 0, 1)):
        sonar.accept(bounty, 0, 820_000, NEW_MODEL, 0, {"from": owner})
    sonar.accept(bounty, 1, 820_000, NEW_MODEL, 0, {"from": owner})


def test_accept_unrevealed_head_reverts(sonar, owner, bounty, miner, submit, E):
    submit(bounty, miner, reveal=False)
    with brownie.reverts(E.SonarWrongStatus(bounty, 0, SUB_COMMITTED)):
        sonar.accept(bounty, 0, 850_000, NEW_MODEL, 0, {"from": owner})


def test_accept_with_empty_queue_reverts(sonar, owner, bounty, E):
    with brownie.reverts(E.SonarWrongStatus(bounty, 0, 0)):
        sonar.accept(bounty, 0, 850_000, NEW_MODEL, 0, {"from": owner})


def test_accept_by_non_owner_reverts(sonar, bounty, miner, stranger, submit, E):
    submit(bounty, miner)
    with brownie.reverts(E.SonarNotBountyOwner(bounty, miner)):
        sonar.accept(bounty, 0, 850_000, NEW_MODEL, 0, {"from": miner})
    with brownie.reverts(E.SonarNotBountyOwner(bounty, stranger)):
        sonar.reject(bounty, 0, 1, 2, {"from": stranger})


def test_accept_on_unknown_bounty_reverts(sonar, owner, E):
    with brownie.reverts(E.SonarUnknownBounty(9)):
        sonar.accept(9, 0, 850_000, NEW_MODEL, 0, {"from": owner})


def test_accept_without_model_digest_reverts(sonar, owner, bounty, miner, submit, E):
    submit(bounty, miner)
    with brownie.reverts(E.SonarInvalidParams("modelDigest")):
        sonar.accept(bounty, 0, 850_000, b"\x00" * 32, 0, {"from": owner})


@pytest.mark.parametrize("score", [800_000, 799_999, 0])
def test_accept_non_improving_score_reverts(sonar, owner, bounty, miner, submit, E, score):
    submit(bounty, miner)
    with brownie.reverts(E.SonarNoImprovement(bounty, 800_000, score)):
        sonar.accept(bounty, 0, score, NEW_MODEL, 0, {"from": owner})


def test_accept_non_improving_error_reverts(sonar, owner, miner, post, submit, E):
    bid = post(owner, higher=False, initial=5_000_000, target=1_000_000)
    submit(bid, miner)
    with brownie.reverts(E.SonarNoImprovement(bid, 5_000_000, 5_000_001)):
        sonar.accept(bid, 0, 5_000_001, NEW_MODEL, 0, {"from": owner})


def test_accept_must_beat_the_best_score_not_the_initial(sonar, owner, bounty, miner, miner2, submit, E):
    submit(bounty, miner)
    submit(bounty, miner2)
    sonar.accept(bounty, 0, 850_000, NEW_MODEL, 0, {"from": owner})
    with brownie.reverts(E.SonarNoImprovement(bounty, 850_000, 840_000)):
        sonar.accept(bounty, 1, 840_000, NEW_MODEL, 0, {"from": owner})


def test_accept_on_closed_bounty_reverts(sonar, owner, miner, post, submit, sleep, now, E):
    bid = post(owner, deadline=now() + 100)
    submit(bid, miner)
    sleep(2 * WINDOW + 1)
    sonar.close(bid, {"from": owner})
    with brownie.reverts(E.SonarBountyNotOpen(bid, BOUNTY_CLOSED)):
        sonar.accept(bid, 0, 850_000, NEW_MODEL, 0, {"from": owner})
    with brownie.reverts(E.SonarBountyNotOpen(bid, BOUNTY_CLOSED)):
        sonar.reject(bid, 0, 850_000, 1, {"from": owner})


# -------------------------------------------------------------------------------------------------
# reward math, checked against the Python model in conftest (reward_model)
# -------------------------------------------------------------------------------------------------

CASES = [
    # (higherIsBetter, reward, initial, target, scores accepted in order)
    (True, 10**18, 800_000, 900_000, [810_000, 833_333, 850_001, 899_999]),
    (True, 10**18 + 7, 123_457, 987_653, [123_458, 200_001, 555_555, 987_652]),
    (True, 3, 0, 1_000_000, [333_333, 666_666, 999_999]),  # rounds down to 0, 0, 0
    (True, 2**88 - 1, 1, 2**64 - 1, [2**63, 2**64 - 2]),  # no overflow at the bounds (MAX_REWARD)
    (False, 10**18, 2_890_250_000, 1_000_000_000, [2_890_249_999, 2_000_000_000, 1_000_000_001]),
    (False, 777_777_777, 5_000_000, 0, [4_999_999, 3_141_592, 1]),
]


@pytest.mark.parametrize("higher,reward,initial,target,scores", CASES)
def test_reward_is_reward_times_improvement_over_span(
    sonar, token, owner, miner, post, submit, reward_model, higher, reward, initial, target, scores
):
    # an ERC-20 bounty so that huge rewards are affordable
    token.mint(owner, reward, {"from": owner})
    bid = post(owner, token=token, reward=reward, initial=initial, target=target, higher=higher)
    escrow, best, paid = reward, initial, 0
    for i, score in enumerate(scores):
        submit(bid, miner)
        expected, reached = reward_model(reward, escrow, best, score, initial, target, higher)
        assert sonar.previewReward(bid, score) == expected
        tx = sonar.accept(bid, i, score, model(i + 1), 0, {"from": owner})
        assert tx.events["UpdateAccepted"]["reward"] == expected
        assert not reached
        escrow, best, paid = escrow - expected, score, paid + expected
        b = sonar.getBounty(bid)
        assert (b["escrow"], b["paid"], b["bestScore"]) == (escrow, paid, best)
    assert sonar.credits(token, miner) == paid + len(scores) * STAKE


def test_reward_example_accuracy(sonar, owner, bounty, miner, submit):
    # 0.80 -> 0.83 of a 0.80 -> 0.90 span: 30% of 1 ETH
    submit(bounty, miner)
    tx = sonar.accept(bounty, 0, 830_000, NEW_MODEL, 0, {"from": owner})
    assert tx.events["UpdateAccepted"]["reward"] == 3 * 10**17


def test_reward_example_error(sonar, owner, miner, post, submit):
    # MSE 2890.25 -> 2000.00 of a 2890.25 -> 1000.00 span: 890.25 / 1890.25 of 1 ETH
    bid = post(owner, higher=False, initial=2_890_250_000, target=1_000_000_000)
    submit(bid, miner)
    tx = sonar.accept(bid, 0, 2_000_000_000, NEW_MODEL, 0, {"from": owner})
    assert tx.events["UpdateAccepted"]["reward"] == 10**18 * 890_250_000 // 1_890_250_000


def test_rewards_before_target_never_exceed_the_reward(sonar, owner, bounty, miner, submit):
    """Below the target the rewards paid so far plus the next one are at most
    floor(reward × (score − initial) / span) < reward ≤ escrow + paid, since improvements
    telescope and a sum of floors is at most the floor of the sum. So the "capped by the escrow"
    branch of Sonar._rewardFor is unreachable below the target (defensive only); reaching the
    target pays exactly the rest (test_target_reached_pays_exactly_the_rest)."""
    for i, score in enumerate([833_333, 866_666, 899_999]):
        submit(bounty, miner)
        sonar.accept(bounty, i, score, model(i + 1), 0, {"from": owner})
    b = sonar.getBounty(bounty)
    assert b["paid"] == 3 * (REWARD * 33_333 // 100_000)  # 0.99999 of the reward
    assert b["paid"] + b["escrow"] == REWARD


@pytest.mark.parametrize("score", [900_000, 900_001, 1_000_000])
def test_target_reached_pays_exactly_the_rest(sonar, owner, bounty, miner, miner2, submit, score):
    submit(bounty, miner)
    first = sonar.accept(bounty, 0, 830_000, model(1), 0, {"from": owner}).events["UpdateAccepted"]["reward"]
    submit(bounty, miner2)
    tx = sonar.accept(bounty, 1, score, model(2), 0, {"from": owner})
    assert tx.events["UpdateAccepted"]["reward"] == REWARD - first
    assert tx.events["TargetReached"]["score"] == score
    b = sonar.getBounty(bounty)
    assert b["escrow"] == 0
    assert b["paid"] == REWARD
    assert b["status"] == BOUNTY_COMPLETED
    assert sonar.credits(brownie.ZERO_ADDRESS, miner2) == REWARD - first + STAKE


def test_target_reached_on_error_bounty(sonar, owner, miner, post, submit):
    bid = post(owner, higher=False, initial=5_000_000, target=1_000_000)
    submit(bid, miner)
    tx = sonar.accept(bid, 0, 999_999, NEW_MODEL, 0, {"from": owner})
    assert tx.events["UpdateAccepted"]["reward"] == REWARD
    assert sonar.getBounty(bid)["status"] == BOUNTY_COMPLETED


def test_target_reached_pays_forfeited_stakes_too(sonar, owner, bounty, miner, miner2, submit):
    submit(bounty, miner2)
    sonar.reject(bounty, 0, 700_000, 2, {"from": owner})
    submit(bounty, miner)
    tx = sonar.accept(bounty, 1, 950_000, NEW_MODEL, 0, {"from": owner})
    assert tx.events["UpdateAccepted"]["reward"] == REWARD + STAKE


def test_pending_updates_can_be_evaluated_after_completion(sonar, owner, bounty, miner, miner2, submit):
    submit(bounty, miner)
    submit(bounty, miner2)
    sonar.accept(bounty, 0, 900_000, NEW_MODEL, 0, {"from": owner})
    sonar.reject(bounty, 1, 850_000, 2, {"from": owner})
    b = sonar.getBounty(bounty)
    assert (b["status"], b["pending"], b["escrow"]) == (BOUNTY_COMPLETED, 0, STAKE)


# -------------------------------------------------------------------------------------------------
# previewReward
# -------------------------------------------------------------------------------------------------


def test_preview_reward_matches_accept(sonar, owner, bounty, miner, submit):
    submit(bounty, miner)
    preview = sonar.previewReward(bounty, 812_345)
    assert preview == REWARD * 12_345 // 100_000
    tx = sonar.accept(bounty, 0, 812_345, NEW_MODEL, 0, {"from": owner})
    assert tx.events["UpdateAccepted"]["reward"] == preview


@pytest.mark.parametrize("score", [0, 799_999, 800_000])
def test_preview_reward_of_non_improving_score_is_zero(sonar, bounty, score):
    assert sonar.previewReward(bounty, score) == 0


def test_preview_reward_of_target_is_the_escrow(sonar, bounty):
    assert sonar.previewReward(bounty, 900_000) == REWARD
    assert sonar.previewReward(bounty, 2**64 - 1) == REWARD


def test_preview_reward_for_error_bounty(sonar, owner, post):
    bid = post(owner, higher=False, initial=5_000_000, target=1_000_000)
    assert sonar.previewReward(bid, 5_000_000) == 0
    assert sonar.previewReward(bid, 4_000_000) == REWARD // 4
    assert sonar.previewReward(bid, 0) == REWARD


def test_preview_reward_of_unknown_bounty_reverts(sonar, E):
    with brownie.reverts(E.SonarUnknownBounty(1)):
        sonar.previewReward(1, 5)


# -------------------------------------------------------------------------------------------------
# reject
# -------------------------------------------------------------------------------------------------


def test_reject_moves_stake_to_escrow(sonar, owner, bounty, miner, submit):
    submit(bounty, miner)
    sonar.reject(bounty, 0, 790_000, 2, {"from": owner})
    b = sonar.getBounty(bounty)
    assert b["escrow"] == REWARD + STAKE
    assert (b["pending"], b["nextEval"], b["paid"]) == (0, 1, 0)
    assert sonar.credits(brownie.ZERO_ADDRESS, miner) == 0
    assert sonar.getSubmission(bounty, 0)["status"] == SUB_REJECTED


def test_reject_emits_update_rejected(sonar, owner, bounty, miner, submit):
    submit(bounty, miner)
    tx = sonar.reject(bounty, 0, 790_000, 4, {"from": owner})
    ev = tx.events["UpdateRejected"]
    assert (ev["bountyId"], ev["index"], ev["miner"], ev["score"], ev["reason"]) == (bounty, 0, miner, 790_000, 4)


def test_reject_keeps_best_score_and_version(sonar, owner, bounty, miner, submit):
    submit(bounty, miner)
    sonar.reject(bounty, 0, 990_000, 3, {"from": owner})  # e.g. a subgroup regression
    b = sonar.getBounty(bounty)
    assert (b["bestScore"], b["latestVersion"]) == (800_000, 0)


def test_reject_only_the_head_of_the_queue(sonar, owner, bounty, miner, miner2, submit, E):
    submit(bounty, miner)
    submit(bounty, miner2)
    with brownie.reverts(E.SonarNotNextInLine(bounty, 1, 0)):
        sonar.reject(bounty, 1, 0, 1, {"from": owner})


def test_reject_unrevealed_head_reverts(sonar, owner, bounty, miner, submit, E):
    submit(bounty, miner, reveal=False)
    with brownie.reverts(E.SonarWrongStatus(bounty, 0, SUB_COMMITTED)):
        sonar.reject(bounty, 0, 0, 1, {"from": owner})


def test_reject_twice_reverts(sonar, owner, bounty, miner, submit, E):
    submit(bounty, miner)
    sonar.reject(bounty, 0, 0, 1, {"from": owner})
    with brownie.reverts(E.SonarNotNextInLine(bounty, 0, 1)):
        sonar.reject(bounty, 0, 0, 1, {"from": owner})


def test_erc20_reject_and_accept_keep_token_accounting(sonar, token, owner, miner, miner2, post, submit):
    bid = post(owner, token=token)
    submit(bid, miner)
    submit(bid, miner2)
    sonar.reject(bid, 0, 0, 1, {"from": owner})
    sonar.accept(bid, 1, 850_000, NEW_MODEL, 0, {"from": owner})
    b = sonar.getBounty(bid)
    assert b["escrow"] == REWARD + STAKE - REWARD // 2
    assert sonar.credits(token, miner2) == REWARD // 2 + STAKE
    assert token.balanceOf(sonar) == b["escrow"] + sonar.credits(token, miner2)


def test_revealed_status_is_waiting_for_evaluation(sonar, bounty, miner, submit):
    submit(bounty, miner)
    assert sonar.getSubmission(bounty, 0)["status"] == SUB_REVEALED
