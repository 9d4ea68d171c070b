"""Attacks: reentrancy, double spending, double settlement, copied CIDs, foreign settlers and
claimants, cross-bounty payouts, overflow with the largest stake."""

import brownie
import pytest
from brownie import ZERO_ADDRESS

from conftest import BURN, NEW_MODEL, REWARD, STAKE, WINDOW, accept, digest_for, refund, reject, vest_out

CAP = REWARD * 3500 // 10_000


@pytest.fixture
def bounty(owner, post):
    return post(owner)


@pytest.fixture(scope="module")
def reentrant(ReentrantMiner, sonar, deployer):
    return ReentrantMiner.deploy(sonar, {"from": deployer})


def vesting(sonar, bid, miner):
    """(rewards, stakes) vesting for `miner` in bounty `bid`."""
    return tuple(sonar.getVesting(bid, miner)[:2])


def credited_reentrant(sonar, owner, bid, reentrant, attacker, score=820_000):
    """The ReentrantMiner submits through itself and gets accepted; once the bounty's vesting ends
    (its deadline) the attacker releases it to the ReentrantMiner's credit; returns that credit."""
    reentrant.submit(bid, digest_for(1), 0x55, 0, {"from": attacker, "value": STAKE})
    sonar.settle(bid, [accept()], score, NEW_MODEL, 0, {"from": owner})
    vest_out(sonar, bid, reentrant, sender=attacker)
    return sonar.credits(ZERO_ADDRESS, reentrant)


# -------------------------------------------------------------------------------------------------
# reentrancy and double spending
# -------------------------------------------------------------------------------------------------


def test_reentrant_withdraw_fails_and_pays_once(sonar, owner, bounty, reentrant, stranger):
    credit = credited_reentrant(sonar, owner, bounty, reentrant, stranger)
    assert credit == REWARD // 5 + STAKE
    reentrant.attack({"from": stranger})
    assert reentrant.reentries() == 1  # its receive hook did try to re-enter
    assert reentrant.reentrySucceeded() is False
    assert reentrant.balance() == credit
    assert sonar.credits(ZERO_ADDRESS, reentrant) == 0
    assert sonar.balance() == REWARD - REWARD // 5


def test_reentrant_miner_cannot_withdraw_twice(sonar, owner, bounty, reentrant, stranger, E):
    credited_reentrant(sonar, owner, bounty, reentrant, stranger)
    reentrant.attack({"from": stranger})
    with brownie.reverts(E.SonarNothingToWithdraw(reentrant, ZERO_ADDRESS)):
        reentrant.attack({"from": stranger})


def test_reentrancy_cannot_drain_other_bounties(sonar, owner, owner2, post, reentrant, stranger):
    rich = post(owner2, reward=50 * REWARD)
    bid = post(owner)
    credit = credited_reentrant(sonar, owner, bid, reentrant, stranger)
    reentrant.attack({"from": stranger})
    assert reentrant.balance() == credit
    assert sonar.getBounty(rich)["escrow"] == 50 * REWARD
    assert sonar.balance() == 50 * REWARD + REWARD - (credit - STAKE)


def test_double_withdraw_reverts(sonar, owner, bounty, miner, submit, E):
    submit(bounty, miner)
    sonar.settle(bounty, [accept()], 900_000, NEW_MODEL, 0, {"from": owner})
    vest_out(sonar, bounty, miner)
    sonar.withdraw(ZERO_ADDRESS, {"from": miner})
    with brownie.reverts(E.SonarNothingToWithdraw(miner, ZERO_ADDRESS)):
        sonar.withdraw(ZERO_ADDRESS, {"from": miner})
    assert sonar.balance() == 0


def test_settling_a_round_twice_pays_once(sonar, owner, bounty, miner, miner2, submit, E):
    submit(bounty, miner)
    submit(bounty, miner2)
    sonar.settle(bounty, [accept(5000), accept(5000)], 820_000, NEW_MODEL, 0, {"from": owner})
    with brownie.reverts(E.SonarInvalidRound(bounty, 2, 0)):
        sonar.settle(bounty, [accept(5000), accept(5000)], 830_000, NEW_MODEL, 0, {"from": owner})
    assert vesting(sonar, bounty, miner) == (REWARD // 10, STAKE)


def test_accepted_miner_cannot_also_reclaim_its_stake(sonar, owner, bounty, miner, submit, sleep, E):
    submit(bounty, miner)
    sonar.settle(bounty, [accept()], 820_000, NEW_MODEL, 0, {"from": owner})
    sleep(WINDOW + 1)
    with brownie.reverts(E.SonarWrongStatus(bounty, 0, 2)):
        sonar.reclaimStake(bounty, 0, {"from": miner})


def test_reclaimed_update_cannot_be_skipped_twice(sonar, owner, bounty, miner, miner2, submit, sleep, E):
    submit(bounty, miner)
    submit(bounty, miner2)
    sleep(WINDOW + 1)
    sonar.reclaimStake(bounty, 1, {"from": miner2})
    sonar.skip(bounty, {"from": miner})
    sonar.skip(bounty, {"from": miner})
    with brownie.reverts(E.SonarNothingToSkip(bounty)):
        sonar.skip(bounty, {"from": miner})
    assert sonar.credits(ZERO_ADDRESS, miner2) == STAKE
    assert sonar.balance() == REWARD + 2 * STAKE


# -------------------------------------------------------------------------------------------------
# copied CIDs
# -------------------------------------------------------------------------------------------------


def test_copied_cid_front_running_the_original_forfeits_the_copiers_stake(sonar, owner, bounty, miner, stranger):
    """The copier front-runs the victim with the same CID: it is just another submission. The owner
    decrypts it, finds the victim's address inside (not the submitter) and forfeits the copy."""
    sonar.submit(bounty, digest_for(42), 0x55, 0, {"from": stranger, "value": STAKE})  # the copy
    sonar.submit(bounty, digest_for(42), 0x55, 0, {"from": miner, "value": STAKE})  # the original
    sonar.settle(bounty, [reject(6), accept()], 820_000, NEW_MODEL, 0, {"from": owner})
    assert sonar.credits(ZERO_ADDRESS, stranger) == 0
    assert vesting(sonar, bounty, stranger) == (0, 0)
    # the copier's stake went to the round's pot: the victim is paid it
    assert vesting(sonar, bounty, miner) == (REWARD // 5 + STAKE, STAKE)


# -------------------------------------------------------------------------------------------------
# foreign settlers and claimants
# -------------------------------------------------------------------------------------------------


def test_only_the_bounty_owner_closes(sonar, owner2, stranger, post, sleep, now, E):
    bid = post(stranger, deadline=now() + 100)
    sleep(101)
    with brownie.reverts(E.SonarNotBountyOwner(bid, owner2)):
        sonar.close(bid, {"from": owner2})


def test_owner_of_one_bounty_cannot_settle_another(sonar, owner, owner2, post, miner, submit, E):
    mine = post(owner)
    theirs = post(owner2)
    submit(theirs, miner)
    with brownie.reverts(E.SonarNotBountyOwner(theirs, owner)):
        sonar.settle(theirs, [reject()], 0, NEW_MODEL, 0, {"from": owner})
    assert sonar.getBounty(mine)["pending"] == 0


def test_another_miners_reward_cannot_be_claimed(sonar, owner, bounty, miner, stranger, submit, E):
    submit(bounty, miner)
    sonar.settle(bounty, [accept()], 820_000, NEW_MODEL, 0, {"from": owner})
    with brownie.reverts(E.SonarNothingToWithdraw(stranger, ZERO_ADDRESS)):
        sonar.withdraw(ZERO_ADDRESS, {"from": stranger})
    # releasing someone else's vesting credits that someone, not the caller
    vest_out(sonar, bounty, miner, sender=stranger)
    with brownie.reverts(E.SonarNothingToWithdraw(stranger, ZERO_ADDRESS)):
        sonar.withdraw(ZERO_ADDRESS, {"from": stranger})
    assert sonar.credits(ZERO_ADDRESS, miner) == REWARD // 5 + STAKE


def test_another_miners_stake_cannot_be_reclaimed(sonar, bounty, miner, stranger, submit, sleep, E):
    submit(bounty, miner)
    sleep(WINDOW + 1)
    with brownie.reverts(E.SonarNotSubmissionMiner(bounty, 0, stranger)):
        sonar.reclaimStake(bounty, 0, {"from": stranger})


def test_the_caller_of_skip_gets_nothing(sonar, bounty, miner, stranger, submit, sleep):
    submit(bounty, miner)
    sleep(WINDOW + 1)
    sonar.skip(bounty, {"from": stranger})
    assert sonar.credits(ZERO_ADDRESS, stranger) == 0
    assert sonar.credits(ZERO_ADDRESS, miner) == STAKE


# -------------------------------------------------------------------------------------------------
# bounties are isolated
# -------------------------------------------------------------------------------------------------


def test_target_reward_is_capped_by_its_own_bounty(sonar, owner, owner2, miner, post, submit):
    small = post(owner, reward=10**15, stake=10**14)
    big = post(owner2, reward=20 * REWARD)
    submit(small, miner)
    tx = sonar.settle(small, [accept()], 999_999, NEW_MODEL, 0, {"from": owner})
    assert tx.events["UpdateAccepted"]["reward"] == 10**15
    assert sonar.getBounty(big)["escrow"] == 20 * REWARD
    assert vesting(sonar, small, miner) == (10**15, 10**14)
    assert vesting(sonar, big, miner) == (0, 0)


def test_completed_bounty_pays_nothing_more(sonar, owner, owner2, miner, post, submit):
    small = post(owner, reward=10**15, stake=10**14)
    big = post(owner2, reward=20 * REWARD)
    submit(small, miner)
    submit(small, miner)
    sonar.settle(small, [accept()], 900_000, NEW_MODEL, 0, {"from": owner})
    tx = sonar.settle(small, [accept()], 950_000, NEW_MODEL, 0, {"from": owner})
    assert tx.events["UpdateAccepted"]["reward"] == 0
    assert sonar.getBounty(big)["escrow"] == 20 * REWARD


def test_forfeit_pool_of_one_bounty_never_pays_another(sonar, owner, owner2, miner, miner2, post, submit):
    a = post(owner)
    b = post(owner2)
    submit(a, miner)
    sonar.settle(a, [reject()], 0, NEW_MODEL, 0, {"from": owner})
    submit(b, miner2)
    tx = sonar.settle(b, [accept()], 820_000, NEW_MODEL, 0, {"from": owner2})
    assert tx.events["UpdateAccepted"]["reward"] == REWARD // 5
    assert sonar.getBounty(a)["forfeitPool"] == STAKE


def test_erc20_bounty_never_pays_eth(sonar, token, owner, owner2, miner, post, submit):
    eth = post(owner2, reward=5 * REWARD)
    tok = post(owner, token=token, reward=REWARD)
    submit(tok, miner)
    sonar.settle(tok, [accept()], 900_000, NEW_MODEL, 0, {"from": owner})
    vest_out(sonar, tok, miner)
    assert sonar.credits(ZERO_ADDRESS, miner) == 0
    assert sonar.credits(token, miner) == REWARD + STAKE
    assert sonar.getBounty(eth)["escrow"] == 5 * REWARD
    assert sonar.balance() == 5 * REWARD


def test_everything_withdrawn_leaves_only_the_burned_stakes(
    sonar, token, owner, owner2, miner, miner2, post, submit, sleep, now
):
    deadline = now() + 100
    a = post(owner, deadline=deadline)
    b = post(owner2, deadline=deadline, token=token)
    submit(a, miner)
    submit(a, miner2)
    submit(b, miner2)
    submit(b, miner)
    sonar.settle(a, [accept(), reject()], 840_000, NEW_MODEL, 0, {"from": owner})
    sonar.settle(b, [accept(), reject()], 870_000, NEW_MODEL, 0, {"from": owner2})
    submit(a, miner2)
    sonar.settle(a, [reject()], 0, NEW_MODEL, 0, {"from": owner})
    sleep(WINDOW + 1)
    sonar.close(a, {"from": owner})
    sonar.close(b, {"from": owner2})
    for bid in (a, b):
        for acct in (miner, miner2):
            if sum(vesting(sonar, bid, acct)):
                sonar.release(bid, acct, {"from": acct})
    for acct in (owner, owner2, miner, miner2):
        for tkn in (ZERO_ADDRESS, token):
            if sonar.credits(tkn, acct):
                sonar.withdraw(tkn, {"from": acct})
    assert sonar.balance() == sonar.credits(ZERO_ADDRESS, BURN) == STAKE
    assert token.balanceOf(sonar) == sonar.credits(token, BURN)


# -------------------------------------------------------------------------------------------------
# overflow (F-03)
# -------------------------------------------------------------------------------------------------


def test_largest_stake_forfeited_many_times_does_not_overflow(sonar, token, owner, miner, post, E):
    """stake = reward = MAX_REWARD (2^96 − 1): the old uint96 books overflowed at the 16th forfeit
    (2^92 stakes) and froze the queue. The uint128 pool holds every forfeit a bounty can have."""
    big = sonar.MAX_REWARD()
    token.mint(owner, big, {"from": owner})
    token.mint(miner, 40 * big, {"from": miner})
    bid = post(owner, token=token, reward=big, stake=big)
    for n in range(20):
        sonar.submit(bid, digest_for(n + 1), 0x55, 0, {"from": miner})
    sonar.settle(bid, [reject()] * 20, 0, NEW_MODEL, 0, {"from": owner})
    assert sonar.getBounty(bid)["forfeitPool"] == 20 * big
    sonar.submit(bid, digest_for(99), 0x55, 0, {"from": miner})
    tx = sonar.settle(bid, [accept()], 900_000, NEW_MODEL, 0, {"from": owner})
    # a single update reaching the target takes everything: the pool and the escrow
    assert tx.events["UpdateAccepted"]["reward"] == 21 * big
    assert vesting(sonar, bid, miner) == (21 * big, big)  # the uint128 vesting halves hold it too
    vest_out(sonar, bid, miner)
    assert sonar.credits(token, miner) == 22 * big
    assert token.balanceOf(sonar) == 22 * big
