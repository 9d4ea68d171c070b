"""Attacks: reentrancy, double spending, stolen commitments, foreign evaluators, cross-bounty
payouts."""

import brownie
import pytest
from brownie import ZERO_ADDRESS

from conftest import REWARD, STAKE, SUB_REJECTED, WINDOW, digest_for, salt_for

NEW_MODEL = b"\x33" * 32


@pytest.fixture
def bounty(owner, post):
    return post(owner)


@pytest.fixture(scope="module")
def reentrant(ReentrantMiner, sonar, deployer):
    return ReentrantMiner.deploy(sonar, {"from": deployer})


def credited_reentrant(sonar, owner, bid, reentrant, attacker, score=850_000):
    """The ReentrantMiner commits and reveals through itself and gets accepted; returns its credit."""
    d, s = digest_for(1), salt_for(1)
    c = sonar.commitmentOf(bid, reentrant, d, 0x55, 0, s)
    reentrant.commit(bid, c, {"from": attacker, "value": STAKE})
    index = sonar.getBounty(bid)["submissions"] - 1
    reentrant.reveal(bid, index, d, 0x55, 0, s, {"from": attacker})
    sonar.accept(bid, index, score, NEW_MODEL, 0, {"from": owner})
    return sonar.credits(ZERO_ADDRESS, reentrant)


# -------------------------------------------------------------------------------------------------
# reentrancy and double spending
# -------------------------------------------------------------------------------------------------


def test_reentrant_withdraw_fails_and_pays_once(sonar, owner, bounty, reentrant, stranger):
    credit = credited_reentrant(sonar, owner, bounty, reentrant, stranger)
    assert credit == REWARD // 2 + STAKE
    reentrant.attack({"from": stranger})
    assert reentrant.reentries() == 1  # its receive hook did try to re-enter
    assert reentrant.reentrySucceeded() is False
    assert reentrant.balance() == credit
    assert sonar.credits(ZERO_ADDRESS, reentrant) == 0
    assert sonar.balance() == REWARD - REWARD // 2


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
    sonar.accept(bounty, 0, 900_000, NEW_MODEL, 0, {"from": owner})
    sonar.withdraw(ZERO_ADDRESS, {"from": miner})
    with brownie.reverts(E.SonarNothingToWithdraw(miner, ZERO_ADDRESS)):
        sonar.withdraw(ZERO_ADDRESS, {"from": miner})
    assert sonar.balance() == 0


def test_double_accept_reverts(sonar, owner, bounty, miner, submit, E):
    submit(bounty, miner)
    sonar.accept(bounty, 0, 850_000, NEW_MODEL, 0, {"from": owner})
    with brownie.reverts(E.SonarNotNextInLine(bounty, 0, 1)):
        sonar.accept(bounty, 0, 860_000, NEW_MODEL, 0, {"from": owner})
    assert sonar.credits(ZERO_ADDRESS, miner) == REWARD // 2 + STAKE


def test_accept_then_reject_same_update_reverts(sonar, owner, bounty, miner, submit, E):
    submit(bounty, miner)
    sonar.accept(bounty, 0, 850_000, NEW_MODEL, 0, {"from": owner})
    with brownie.reverts(E.SonarNotNextInLine(bounty, 0, 1)):
        sonar.reject(bounty, 0, 0, 1, {"from": owner})


def test_accept_past_the_queue_end_reverts(sonar, owner, bounty, miner, submit, E):
    submit(bounty, miner)
    sonar.accept(bounty, 0, 850_000, NEW_MODEL, 0, {"from": owner})
    with brownie.reverts(E.SonarWrongStatus(bounty, 1, 0)):
        sonar.accept(bounty, 1, 860_000, NEW_MODEL, 0, {"from": owner})


def test_accepted_miner_cannot_also_reclaim_stake(sonar, owner, bounty, miner, submit, sleep, E):
    submit(bounty, miner)
    sonar.accept(bounty, 0, 850_000, NEW_MODEL, 0, {"from": owner})
    sleep(2 * WINDOW + 1)
    with brownie.reverts(E.SonarWrongStatus(bounty, 0, 3)):
        sonar.reclaimStake(bounty, 0, {"from": miner})


def test_rejected_miner_cannot_reclaim_forfeited_stake(sonar, owner, bounty, miner, submit, sleep, E):
    submit(bounty, miner)
    sonar.reject(bounty, 0, 0, 5, {"from": owner})
    sleep(2 * WINDOW + 1)
    with brownie.reverts(E.SonarWrongStatus(bounty, 0, SUB_REJECTED)):
        sonar.reclaimStake(bounty, 0, {"from": miner})


def test_reclaimed_update_cannot_be_skipped_twice(sonar, owner, bounty, miner, submit, sleep, E):
    submit(bounty, miner)
    submit(bounty, miner)
    sleep(2 * WINDOW + 1)
    sonar.reclaimStake(bounty, 1, {"from": miner})
    sonar.reject(bounty, 0, 0, 1, {"from": owner})
    sonar.skip(bounty, {"from": miner})
    with brownie.reverts(E.SonarNothingToSkip(bounty)):
        sonar.skip(bounty, {"from": miner})
    assert sonar.getBounty(bounty)["escrow"] == REWARD + STAKE


# -------------------------------------------------------------------------------------------------
# stolen commitments
# -------------------------------------------------------------------------------------------------


def test_copied_commitment_cannot_be_revealed_by_the_copier(sonar, bounty, miner, stranger, E):
    """The attacker front-runs the victim's commit with the same commitment (taken from the
    mempool), then copies the victim's reveal arguments: the commitment binds the victim's
    address, so the attacker's reveal fails."""
    d, s = digest_for(42), salt_for(42)
    victims = sonar.commitmentOf(bounty, miner, d, 0x55, 0, s)
    sonar.commit(bounty, victims, {"from": stranger, "value": STAKE})  # index 0: the copy
    sonar.commit(bounty, victims, {"from": miner, "value": STAKE})  # index 1: the victim
    sonar.reveal(bounty, 1, d, 0x55, 0, s, {"from": miner})
    with brownie.reverts(E.SonarCommitmentMismatch(bounty, 0)):
        sonar.reveal(bounty, 0, d, 0x55, 0, s, {"from": stranger})


def test_revealing_the_victims_index_reverts(sonar, bounty, miner, stranger, submit, E):
    u = submit(bounty, miner, reveal=False)
    with brownie.reverts(E.SonarNotSubmissionMiner(bounty, u.index, stranger)):
        sonar.reveal(*u.reveal_args(), {"from": stranger})


def test_copied_commitment_forfeits_the_copiers_stake(sonar, owner, bounty, miner, stranger, sleep):
    d, s = digest_for(42), salt_for(42)
    victims = sonar.commitmentOf(bounty, miner, d, 0x55, 0, s)
    sonar.commit(bounty, victims, {"from": stranger, "value": STAKE})
    sonar.commit(bounty, victims, {"from": miner, "value": STAKE})
    sonar.reveal(bounty, 1, d, 0x55, 0, s, {"from": miner})
    sleep(WINDOW + 1)
    sonar.skip(bounty, {"from": owner})
    sonar.accept(bounty, 1, 850_000, NEW_MODEL, 0, {"from": owner})
    assert sonar.credits(ZERO_ADDRESS, stranger) == 0
    assert sonar.credits(ZERO_ADDRESS, miner) == REWARD // 2 + STAKE


def test_copied_cid_after_reveal_queues_behind_the_original(sonar, owner, bounty, miner, stranger, submit, E):
    """Copying a revealed CID into a fresh commitment puts the copy behind the original: it can
    no longer improve on the original's score."""
    u = submit(bounty, miner)
    copy = sonar.commitmentOf(bounty, stranger, u.digest, u.codec, 0, salt_for(777))
    sonar.commit(bounty, copy, {"from": stranger, "value": STAKE})
    sonar.reveal(bounty, 1, u.digest, u.codec, 0, salt_for(777), {"from": stranger})
    sonar.accept(bounty, 0, 850_000, NEW_MODEL, 0, {"from": owner})
    with brownie.reverts(E.SonarNoImprovement(bounty, 850_000, 850_000)):
        sonar.accept(bounty, 1, 850_000, NEW_MODEL, 0, {"from": owner})


def test_commitment_cannot_be_replayed_in_another_bounty(sonar, owner, owner2, post, miner, E):
    a, b = post(owner), post(owner2)
    d, s = digest_for(5), salt_for(5)
    c = sonar.commitmentOf(a, miner, d, 0x55, 0, s)
    sonar.commit(b, c, {"from": miner, "value": STAKE})
    with brownie.reverts(E.SonarCommitmentMismatch(b, 0)):
        sonar.reveal(b, 0, d, 0x55, 0, s, {"from": miner})


# -------------------------------------------------------------------------------------------------
# foreign evaluators and claimants
# -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["miner", "stranger", "owner2"])
def test_only_the_bounty_owner_evaluates(sonar, bounty, miner, stranger, owner2, submit, E, who):
    caller = {"miner": miner, "stranger": stranger, "owner2": owner2}[who]
    submit(bounty, miner)
    with brownie.reverts(E.SonarNotBountyOwner(bounty, caller)):
        sonar.accept(bounty, 0, 900_000, NEW_MODEL, 0, {"from": caller})
    with brownie.reverts(E.SonarNotBountyOwner(bounty, caller)):
        sonar.reject(bounty, 0, 0, 1, {"from": caller})


def test_only_the_bounty_owner_closes(sonar, owner2, stranger, miner, post, sleep, now, E):
    bid = post(stranger, deadline=now() + 100)
    sleep(101)
    with brownie.reverts(E.SonarNotBountyOwner(bid, owner2)):
        sonar.close(bid, {"from": owner2})


def test_another_miners_reward_cannot_be_claimed(sonar, owner, bounty, miner, stranger, submit, E):
    submit(bounty, miner)
    sonar.accept(bounty, 0, 850_000, NEW_MODEL, 0, {"from": owner})
    with brownie.reverts(E.SonarNothingToWithdraw(stranger, ZERO_ADDRESS)):
        sonar.withdraw(ZERO_ADDRESS, {"from": stranger})
    assert sonar.credits(ZERO_ADDRESS, miner) == REWARD // 2 + STAKE


def test_another_miners_stake_cannot_be_reclaimed(sonar, bounty, miner, stranger, submit, sleep, E):
    submit(bounty, miner)
    sleep(2 * WINDOW + 1)
    with brownie.reverts(E.SonarNotSubmissionMiner(bounty, 0, stranger)):
        sonar.reclaimStake(bounty, 0, {"from": stranger})


def test_reward_goes_to_the_committer_not_the_caller_of_skip(sonar, owner, bounty, miner, stranger, submit, sleep):
    submit(bounty, miner, reveal=False)
    submit(bounty, miner)
    sleep(WINDOW + 1)
    sonar.skip(bounty, {"from": stranger})  # forfeits index 0's stake to the escrow, not to stranger
    assert sonar.credits(ZERO_ADDRESS, stranger) == 0
    assert sonar.getBounty(bounty)["escrow"] == REWARD + STAKE


# -------------------------------------------------------------------------------------------------
# bounties are isolated
# -------------------------------------------------------------------------------------------------


def test_target_reward_is_capped_by_its_own_bounty(sonar, owner, owner2, miner, post, submit):
    small = post(owner, reward=10**15)
    big = post(owner2, reward=20 * REWARD)
    submit(small, miner)
    tx = sonar.accept(small, 0, 999_999, NEW_MODEL, 0, {"from": owner})
    assert tx.events["UpdateAccepted"]["reward"] == 10**15
    assert sonar.getBounty(big)["escrow"] == 20 * REWARD
    assert sonar.credits(ZERO_ADDRESS, miner) == 10**15 + STAKE


def test_completed_bounty_pays_nothing_more(sonar, owner, owner2, miner, post, submit):
    small = post(owner, reward=10**15)
    big = post(owner2, reward=20 * REWARD)
    submit(small, miner)
    submit(small, miner)
    sonar.accept(small, 0, 900_000, NEW_MODEL, 0, {"from": owner})
    tx = sonar.accept(small, 1, 950_000, NEW_MODEL, 0, {"from": owner})
    assert tx.events["UpdateAccepted"]["reward"] == 0
    assert sonar.getBounty(big)["escrow"] == 20 * REWARD


def test_erc20_bounty_never_pays_eth(sonar, token, owner, owner2, miner, post, submit):
    eth = post(owner2, reward=5 * REWARD)
    tok = post(owner, token=token, reward=REWARD)
    submit(tok, miner)
    sonar.accept(tok, 0, 900_000, NEW_MODEL, 0, {"from": owner})
    assert sonar.credits(ZERO_ADDRESS, miner) == 0
    assert sonar.credits(token, miner) == REWARD + STAKE
    assert sonar.getBounty(eth)["escrow"] == 5 * REWARD
    assert sonar.balance() == 5 * REWARD


def test_everything_withdrawn_leaves_the_contract_empty(
    sonar, token, owner, owner2, miner, miner2, post, submit, sleep, now
):
    deadline = now() + 100
    a = post(owner, deadline=deadline)
    b = post(owner2, deadline=deadline, token=token)
    submit(a, miner)
    submit(a, miner2)
    submit(b, miner2)
    submit(b, miner, reveal=False)
    sonar.accept(a, 0, 840_000, NEW_MODEL, 0, {"from": owner})
    sonar.reject(a, 1, 0, 2, {"from": owner})
    sonar.accept(b, 0, 870_000, NEW_MODEL, 0, {"from": owner2})
    sleep(2 * WINDOW + 1)
    sonar.skip(b, {"from": miner})
    sonar.close(a, {"from": owner})
    sonar.close(b, {"from": owner2})
    for acct in (owner, owner2, miner, miner2):
        for tkn in (ZERO_ADDRESS, token):
            if sonar.credits(tkn, acct):
                sonar.withdraw(tkn, {"from": acct})
    assert sonar.balance() == 0
    assert token.balanceOf(sonar) == 0
