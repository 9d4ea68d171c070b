"""close (the owner takes back what is left) and withdraw (pull payments, ETH and ERC-20)."""

import brownie
import pytest
from brownie import ZERO_ADDRESS

from conftest import BOUNTY_CLOSED, REWARD, STAKE, WINDOW

NEW_MODEL = b"\x33" * 32


@pytest.fixture
def short(owner, post, now):
    """An ETH bounty whose deadline is 100 s away."""
    return post(owner, deadline=now() + 100)


def gas_cost(tx):
    return tx.gas_used * tx.gas_price


# -------------------------------------------------------------------------------------------------
# close
# -------------------------------------------------------------------------------------------------


def test_close_before_deadline_reverts(sonar, owner, short, E):
    deadline = sonar.getBounty(short)["deadline"]
    with brownie.reverts(E.SonarStillInWindow(short, deadline)):
        sonar.close(short, {"from": owner})


def test_close_after_deadline_credits_owner_the_escrow(sonar, owner, short, sleep):
    sleep(101)
    tx = sonar.close(short, {"from": owner})
    assert sonar.credits(ZERO_ADDRESS, owner) == REWARD
    b = sonar.getBounty(short)
    assert (b["status"], b["escrow"]) == (BOUNTY_CLOSED, 0)
    assert tx.return_value == REWARD


def test_close_emits_paid_and_refunded(sonar, owner, short, miner, submit, sleep):
    submit(short, miner)
    sonar.accept(short, 0, 830_000, NEW_MODEL, 0, {"from": owner})
    submit(short, miner)
    sonar.reject(short, 1, 0, 1, {"from": owner})
    sleep(101)
    tx = sonar.close(short, {"from": owner})
    ev = tx.events["BountyClosed"]
    paid = REWARD * 3 // 10
    assert (ev["bountyId"], ev["owner"], ev["paid"], ev["refunded"]) == (short, owner, paid, REWARD - paid + STAKE)


def test_close_by_non_owner_reverts(sonar, short, stranger, sleep, E):
    sleep(101)
    with brownie.reverts(E.SonarNotBountyOwner(short, stranger)):
        sonar.close(short, {"from": stranger})


def test_close_twice_reverts(sonar, owner, short, sleep, E):
    sleep(101)
    sonar.close(short, {"from": owner})
    with brownie.reverts(E.SonarBountyNotOpen(short, BOUNTY_CLOSED)):
        sonar.close(short, {"from": owner})


def test_close_unknown_bounty_reverts(sonar, owner, E):
    with brownie.reverts(E.SonarUnknownBounty(1)):
        sonar.close(1, {"from": owner})


def test_pending_update_inside_its_window_blocks_close(sonar, owner, short, miner, submit, sleep, E):
    sleep(50)
    submit(short, miner)  # committed just before the deadline
    last_due = sonar.getBounty(short)["lastDue"]
    assert last_due == sonar.getSubmission(short, 0)["committedAt"] + 2 * WINDOW
    sleep(51)
    with brownie.reverts(E.SonarStillInWindow(short, last_due)):
        sonar.close(short, {"from": owner})


def test_unrevealed_pending_update_also_blocks_close(sonar, owner, short, miner, submit, sleep, E):
    submit(short, miner, reveal=False)
    sleep(WINDOW + 1)  # past the deadline and the reveal window, not the evaluation window
    with brownie.reverts(E.SonarStillInWindow(short, sonar.getBounty(short)["lastDue"])):
        sonar.close(short, {"from": owner})


def test_close_after_all_windows_with_pending_update(sonar, owner, short, miner, submit, sleep):
    submit(short, miner)
    sleep(2 * WINDOW + 1)
    sonar.close(short, {"from": owner})
    # the miner's stake is still theirs
    sonar.reclaimStake(short, 0, {"from": miner})
    assert sonar.credits(ZERO_ADDRESS, miner) == STAKE
    assert sonar.credits(ZERO_ADDRESS, owner) == REWARD


def test_evaluated_updates_do_not_block_close(sonar, owner, short, miner, submit, sleep):
    submit(short, miner)
    sonar.reject(short, 0, 0, 1, {"from": owner})
    sleep(101)  # inside the update's window, but it is no longer pending
    sonar.close(short, {"from": owner})


def test_completed_bounty_can_close_before_deadline(sonar, owner, bounty_completed):
    tx = sonar.close(bounty_completed, {"from": owner})
    assert tx.events["BountyClosed"]["paid"] == REWARD
    assert tx.events["BountyClosed"]["refunded"] == 0


@pytest.fixture
def bounty_completed(sonar, owner, miner, post, submit):
    bid = post(owner)
    submit(bid, miner)
    sonar.accept(bid, 0, 900_000, NEW_MODEL, 0, {"from": owner})
    return bid


def test_completed_bounty_with_pending_update_waits(sonar, owner, miner, miner2, post, submit, E):
    bid = post(owner)
    submit(bid, miner)
    submit(bid, miner2)
    sonar.accept(bid, 0, 900_000, NEW_MODEL, 0, {"from": owner})
    with brownie.reverts(E.SonarStillInWindow(bid, sonar.getBounty(bid)["lastDue"])):
        sonar.close(bid, {"from": owner})
    sonar.reject(bid, 1, 0, 2, {"from": owner})
    tx = sonar.close(bid, {"from": owner})
    assert tx.events["BountyClosed"]["refunded"] == STAKE


def test_erc20_close_credits_tokens(sonar, token, owner, miner, post, submit, sleep, now):
    bid = post(owner, token=token, deadline=now() + 100)
    submit(bid, miner)
    sonar.reject(bid, 0, 0, 1, {"from": owner})
    sleep(101)
    sonar.close(bid, {"from": owner})
    assert sonar.credits(token, owner) == REWARD + STAKE
    assert sonar.credits(ZERO_ADDRESS, owner) == 0


# -------------------------------------------------------------------------------------------------
# withdraw
# -------------------------------------------------------------------------------------------------


def test_withdraw_sends_eth_credit(sonar, owner, miner, post, submit):
    bid = post(owner)
    submit(bid, miner)
    sonar.accept(bid, 0, 850_000, NEW_MODEL, 0, {"from": owner})
    credit = REWARD // 2 + STAKE
    before = miner.balance()
    tx = sonar.withdraw(ZERO_ADDRESS, {"from": miner})
    assert miner.balance() == before + credit - gas_cost(tx)
    assert sonar.balance() == REWARD - REWARD // 2
    assert tx.return_value == credit


def test_withdraw_zeroes_balance(sonar, owner, short, sleep):
    sleep(101)
    sonar.close(short, {"from": owner})
    sonar.withdraw(ZERO_ADDRESS, {"from": owner})
    assert sonar.credits(ZERO_ADDRESS, owner) == 0


def test_withdraw_emits_withdrawn(sonar, owner, short, sleep):
    sleep(101)
    sonar.close(short, {"from": owner})
    tx = sonar.withdraw(ZERO_ADDRESS, {"from": owner})
    ev = tx.events["Withdrawn"]
    assert (ev["account"], ev["token"], ev["amount"]) == (owner, ZERO_ADDRESS, REWARD)


def test_withdraw_sends_erc20_credit(sonar, token, owner, miner, post, submit):
    bid = post(owner, token=token)
    submit(bid, miner)
    sonar.accept(bid, 0, 900_000, NEW_MODEL, 0, {"from": owner})
    before = token.balanceOf(miner)
    tx = sonar.withdraw(token, {"from": miner})
    assert token.balanceOf(miner) == before + REWARD + STAKE
    assert token.balanceOf(sonar) == 0
    assert sonar.credits(token, miner) == 0
    assert tx.events["Withdrawn"]["token"] == token


def test_withdraw_with_nothing_reverts(sonar, miner, token, E):
    with brownie.reverts(E.SonarNothingToWithdraw(miner, ZERO_ADDRESS)):
        sonar.withdraw(ZERO_ADDRESS, {"from": miner})
    with brownie.reverts(E.SonarNothingToWithdraw(miner, token)):
        sonar.withdraw(token, {"from": miner})


def test_withdraw_of_other_currency_reverts(sonar, owner, short, token, sleep, E):
    sleep(101)
    sonar.close(short, {"from": owner})
    with brownie.reverts(E.SonarNothingToWithdraw(owner, token)):
        sonar.withdraw(token, {"from": owner})


def test_withdraw_to_contract_that_refuses_eth_reverts(sonar, token, owner, post, submit, impersonate, E):
    """TestToken has no receive(): an ETH credit to it cannot be sent. The credit stays."""
    refuser = impersonate(token.address)
    bid = post(owner, stake=0)
    submit(bid, refuser)
    sonar.accept(bid, 0, 900_000, NEW_MODEL, 0, {"from": owner})
    with brownie.reverts(E.SonarTransferFailed(refuser, REWARD)):
        sonar.withdraw(ZERO_ADDRESS, {"from": refuser})
    assert sonar.credits(ZERO_ADDRESS, refuser) == REWARD
    assert sonar.balance() == REWARD
