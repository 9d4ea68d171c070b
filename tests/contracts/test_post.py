"""postBounty: escrow in ETH or an ERC-20, parameter checks, model version 0, views."""

import brownie
import pytest
from brownie import ZERO_ADDRESS

from conftest import BOUNTY_OPEN, MODEL_DIGEST, REWARD, STAKE, VALIDATION, WINDOW


def test_post_eth_bounty_escrows_msg_value(sonar, owner, post):
    before = owner.balance()
    bid = post(owner)
    assert sonar.balance() == REWARD
    assert sonar.getBounty(bid)["escrow"] == REWARD
    assert owner.balance() <= before - REWARD


def test_first_bounty_id_is_one_and_ids_increase(sonar, owner, owner2, post):
    assert sonar.bountyCount() == 0
    assert post(owner) == 1
    assert post(owner2) == 2
    assert sonar.bountyCount() == 2


def test_post_records_every_param(sonar, owner, params):
    p = params(higher=False, initial=5_000_000, target=1_000_000, stake=123, model_codec=0)
    sonar.postBounty(p, {"from": owner, "value": REWARD})
    b = sonar.getBounty(1)
    assert b["owner"] == owner
    assert b["token"] == ZERO_ADDRESS
    assert b["reward"] == b["escrow"] == REWARD
    assert b["stake"] == 123
    assert b["deadline"] == p[3]
    assert b["evalWindow"] == WINDOW
    assert b["initialScore"] == b["bestScore"] == 5_000_000
    assert b["targetScore"] == 1_000_000
    assert b["higherIsBetter"] is False
    assert b["status"] == BOUNTY_OPEN
    assert b["validationCommitment"] == "0x" + VALIDATION.hex()
    assert (b["latestVersion"], b["nextEval"], b["submissions"], b["pending"], b["paid"]) == (0, 0, 0, 0, 0)
    assert (b["forfeitPool"], b["burned"], b["lastDue"]) == (0, 0, 0)
    assert (b["auditable"], b["auditRevealed"]) == (False, False)


def test_post_records_the_auditable_flag(sonar, owner, params):
    tx = sonar.postBounty(params(auditable=True), {"from": owner, "value": REWARD})
    assert tx.events["BountyPosted"]["auditable"] is True
    assert sonar.getBounty(1)["auditable"] is True


def test_post_emits_bounty_posted(sonar, owner, params):
    p = params()
    tx = sonar.postBounty(p, {"from": owner, "value": REWARD})
    ev = tx.events["BountyPosted"]
    assert ev["bountyId"] == 1
    assert ev["owner"] == owner
    assert ev["token"] == ZERO_ADDRESS
    assert ev["reward"] == REWARD
    assert ev["stake"] == STAKE
    assert ev["deadline"] == p[3]
    assert ev["evalWindow"] == WINDOW
    assert (ev["initialScore"], ev["targetScore"], ev["higherIsBetter"]) == (800_000, 900_000, True)
    assert ev["validationCommitment"] == "0x" + VALIDATION.hex()
    assert ev["auditable"] is False


def test_post_records_model_version_zero(sonar, owner, post):
    bid = post(owner, model_codec=0x70)
    v = sonar.getModelVersion(bid, 0)
    assert v["digest"] == "0x" + MODEL_DIGEST.hex()
    assert v["codec"] == 0x70
    assert v["score"] == 800_000
    assert v["submission"] == 0
    assert v["createdAt"] > 0


def test_post_emits_model_version_recorded(sonar, owner, params):
    tx = sonar.postBounty(params(), {"from": owner, "value": REWARD})
    ev = tx.events["ModelVersionRecorded"]
    assert (ev["bountyId"], ev["version"], ev["codec"], ev["score"]) == (1, 0, 0x70, 800_000)
    assert ev["digest"] == "0x" + MODEL_DIGEST.hex()


def test_post_erc20_bounty_pulls_approved_reward(sonar, token, owner, post):
    before = token.balanceOf(owner)
    bid = post(owner, token=token)
    assert token.balanceOf(sonar) == REWARD
    assert token.balanceOf(owner) == before - REWARD
    assert sonar.getBounty(bid)["token"] == token
    assert sonar.balance() == 0


def test_post_erc20_without_approval_reverts(sonar, token, stranger, params):
    token.approve(sonar, 0, {"from": stranger})
    with brownie.reverts():
        sonar.postBounty(params(token=token), {"from": stranger})


def test_post_erc20_with_eth_attached_reverts(sonar, token, owner, params, E):
    with brownie.reverts(E.SonarWrongPayment(0, 1)):
        sonar.postBounty(params(token=token), {"from": owner, "value": 1})


def test_escrow_is_separate_per_bounty(sonar, token, owner, owner2, post):
    a = post(owner, reward=REWARD)
    b = post(owner2, reward=3 * REWARD)
    c = post(owner, token=token, reward=5 * REWARD)
    assert sonar.getBounty(a)["escrow"] == REWARD
    assert sonar.getBounty(b)["escrow"] == 3 * REWARD
    assert sonar.getBounty(c)["escrow"] == 5 * REWARD
    assert sonar.balance() == 4 * REWARD
    assert token.balanceOf(sonar) == 5 * REWARD


@pytest.mark.parametrize("value", [0, REWARD - 1, REWARD + 1])
def test_post_with_wrong_msg_value_reverts(sonar, owner, params, E, value):
    with brownie.reverts(E.SonarWrongPayment(REWARD, value)):
        sonar.postBounty(params(), {"from": owner, "value": value})


def test_post_zero_reward_reverts(sonar, owner, params, E):
    with brownie.reverts(E.SonarInvalidParams("reward")):
        sonar.postBounty(params(reward=0), {"from": owner})


def test_post_reward_above_max_reverts(sonar, token, owner, params, E):
    too_much = sonar.MAX_REWARD() + 1  # an ERC-20 amount: no account holds that much ETH
    with brownie.reverts(E.SonarInvalidParams("reward")):
        sonar.postBounty(params(reward=too_much, token=token), {"from": owner})


def test_post_past_deadline_reverts(sonar, owner, params, E, now):
    with brownie.reverts(E.SonarInvalidParams("deadline")):
        sonar.postBounty(params(deadline=now() - 10), {"from": owner, "value": REWARD})


@pytest.mark.parametrize("window", [0, 1, 599, 30 * 86400 + 1])
def test_post_eval_window_outside_ten_minutes_to_thirty_days_reverts(sonar, owner, params, E, window):
    """F-05: a window too short for any honest miner to be settled in would be a honeypot."""
    with brownie.reverts(E.SonarInvalidParams("evalWindow")):
        sonar.postBounty(params(eval_window=window), {"from": owner, "value": REWARD})


def test_post_min_eval_window_of_ten_minutes_is_allowed(sonar, owner, params):
    assert sonar.MIN_EVAL_WINDOW() == 600
    sonar.postBounty(params(eval_window=600), {"from": owner, "value": REWARD})
    assert sonar.getBounty(1)["evalWindow"] == 600


def test_post_zero_stake_reverts(sonar, owner, params, E):
    """F-04: a free submission is free queue spam."""
    with brownie.reverts(E.SonarInvalidParams("stake")):
        sonar.postBounty(params(stake=0), {"from": owner, "value": REWARD})


def test_post_stake_above_reward_reverts(sonar, owner, params, E):
    """F-03: the stake is bounded by the reward (itself < 2^96), so the books cannot overflow."""
    with brownie.reverts(E.SonarInvalidParams("stake")):
        sonar.postBounty(params(stake=REWARD + 1), {"from": owner, "value": REWARD})


def test_post_stake_equal_to_reward_is_allowed(sonar, owner, params):
    sonar.postBounty(params(stake=REWARD), {"from": owner, "value": REWARD})
    assert sonar.getBounty(1)["stake"] == REWARD


def test_post_zero_validation_commitment_reverts(sonar, owner, params, E):
    with brownie.reverts(E.SonarInvalidParams("validationCommitment")):
        sonar.postBounty(params(validation=b"\x00" * 32), {"from": owner, "value": REWARD})


def test_constants_are_the_designed_ones(sonar):
    assert sonar.MAX_ROUND() == 32
    assert sonar.MAX_SHARE_BPS() == 3500
    assert sonar.BPS() == 10_000
    assert sonar.MAX_REWARD() == 2**96 - 1
    assert sonar.BURN_ADDRESS() == "0x000000000000000000000000000000000000dEaD"


def test_post_max_eval_window_is_allowed(sonar, owner, params):
    assert sonar.MAX_EVAL_WINDOW() == 30 * 86400
    sonar.postBounty(params(eval_window=30 * 86400), {"from": owner, "value": REWARD})
    assert sonar.getBounty(1)["evalWindow"] == 30 * 86400


@pytest.mark.parametrize(
    "higher,initial,target",
    [(True, 800_000, 800_000), (True, 800_000, 700_000), (False, 500, 500), (False, 500, 600)],
)
def test_post_target_not_beyond_initial_reverts(sonar, owner, params, E, higher, initial, target):
    with brownie.reverts(E.SonarInvalidParams("targetScore")):
        sonar.postBounty(
            params(higher=higher, initial=initial, target=target), {"from": owner, "value": REWARD}
        )


def test_post_zero_model_digest_reverts(sonar, owner, params, E):
    with brownie.reverts(E.SonarInvalidParams("modelDigest")):
        sonar.postBounty(params(model_digest=b"\x00" * 32), {"from": owner, "value": REWARD})


def test_get_bounty_of_unknown_id_reverts(sonar, owner, post, E):
    post(owner)
    with brownie.reverts(E.SonarUnknownBounty(0)):
        sonar.getBounty(0)
    with brownie.reverts(E.SonarUnknownBounty(2)):
        sonar.getBounty(2)


def test_get_model_version_beyond_latest_reverts(sonar, owner, post, E):
    bid = post(owner)
    with brownie.reverts(E.SonarUnknownVersion(bid, 1)):
        sonar.getModelVersion(bid, 1)


def test_score_scale_is_six_decimals(sonar):
    assert sonar.SCORE_SCALE() == 10**6


def test_post_with_fee_on_transfer_token_reverts(FeeToken, sonar, owner, params, E):
    fee_token = FeeToken.deploy({"from": owner})
    fee_token.mint(owner, 2 * REWARD, {"from": owner})
    fee_token.approve(sonar, REWARD, {"from": owner})
    # 1% burnt on the way: what arrives is not what was promised, so the bounty is refused
    with brownie.reverts(E.SonarWrongPayment(REWARD, REWARD - REWARD // 100)):
        sonar.postBounty(params(token=fee_token), {"from": owner})
    assert fee_token.balanceOf(sonar) == 0
