"""close (the owner takes back the unpaid escrow, the forfeit pool is burned), revealAudit, and
withdraw (pull payments, ETH and ERC-20)."""

import brownie
import pytest
from brownie import ZERO_ADDRESS

from conftest import (
    BOUNTY_CLOSED,
    BOUNTY_COMPLETED,
    BURN,
    NEW_MODEL,
    REWARD,
    STAKE,
    VALIDATION,
    WINDOW,
    accept,
    refund,
    reject,
    vest_out,
)

CAP = REWARD * 3500 // 10_000
AUDIT_CODEC = 0x55


@pytest.fixture
def short(owner, post, now):
    """An ETH bounty whose deadline is 100 s away."""
    return post(owner, deadline=now() + 100)


@pytest.fixture
def auditable(owner, post, now):
    return post(owner, deadline=now() + 100, auditable=True)


def gas_cost(tx):
    return tx.gas_used * tx.gas_price


# -------------------------------------------------------------------------------------------------
# close
# -------------------------------------------------------------------------------------------------


def test_close_before_the_deadline_reverts(sonar, owner, short, E):
    deadline = sonar.getBounty(short)["deadline"]
    with brownie.reverts(E.SonarDeadlineNotPassed(short, deadline)):
        sonar.close(short, {"from": owner})


def test_close_after_the_deadline_credits_the_owner_the_escrow(sonar, owner, short, sleep):
    sleep(101)
    tx = sonar.close(short, {"from": owner})
    assert sonar.credits(ZERO_ADDRESS, owner) == REWARD
    b = sonar.getBounty(short)
    assert (b["status"], b["escrow"]) == (BOUNTY_CLOSED, 0)
    assert tx.return_value == REWARD


def test_close_burns_the_forfeit_pool_and_refunds_only_the_escrow(sonar, owner, short, miner, miner2, submit, sleep):
    submit(short, miner)
    submit(short, miner2)
    sonar.settle(short, [accept(), reject()], 830_000, NEW_MODEL, 0, {"from": owner})  # pool pays first
    submit(short, miner2)
    sonar.settle(short, [reject()], 0, NEW_MODEL, 0, {"from": owner})
    sleep(101)
    tx = sonar.close(short, {"from": owner})
    paid = REWARD * 3 // 10 + STAKE
    ev = tx.events["BountyClosed"]
    assert (ev["bountyId"], ev["owner"], ev["paid"], ev["refunded"], ev["burned"]) == (
        short, owner, paid, REWARD - REWARD * 3 // 10, STAKE
    )
    assert sonar.credits(ZERO_ADDRESS, owner) == REWARD - REWARD * 3 // 10
    assert sonar.credits(ZERO_ADDRESS, BURN) == STAKE
    b = sonar.getBounty(short)
    assert (b["burned"], b["forfeitPool"]) == (STAKE, 0)


def test_forfeited_stakes_never_reach_the_owner(sonar, owner, short, miner, miner2, submit, sleep):
    """F-02: rejecting good work to keep the stakes earns the owner nothing."""
    submit(short, miner)
    submit(short, miner2)
    sonar.settle(short, [reject(), reject()], 0, NEW_MODEL, 0, {"from": owner})
    sleep(101)
    sonar.close(short, {"from": owner})
    assert sonar.credits(ZERO_ADDRESS, owner) == REWARD
    assert sonar.credits(ZERO_ADDRESS, BURN) == 2 * STAKE


def test_burned_stakes_stay_in_the_contract_credited_to_the_burn_address(sonar, owner, short, miner, submit, sleep):
    """Nobody holds 0x…dEaD's key, so the credit is never withdrawn (the books still count it)."""
    submit(short, miner)
    sonar.settle(short, [reject()], 0, NEW_MODEL, 0, {"from": owner})
    sleep(101)
    sonar.close(short, {"from": owner})
    assert sonar.credits(ZERO_ADDRESS, BURN) == STAKE
    assert sonar.balance() == REWARD + STAKE


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
    u = submit(short, miner)  # just before the deadline
    last_due = sonar.getBounty(short)["lastDue"]
    assert last_due == u.tx.timestamp + WINDOW
    sleep(51)
    with brownie.reverts(E.SonarStillInWindow(short, last_due)):
        sonar.close(short, {"from": owner})


def test_close_after_every_window_with_a_pending_update(sonar, owner, short, miner, submit, sleep):
    submit(short, miner)
    sleep(WINDOW + 1)
    sonar.close(short, {"from": owner})
    # the unsettled stake is not the owner's: its miner reclaims it
    assert sonar.credits(ZERO_ADDRESS, owner) == REWARD
    sonar.reclaimStake(short, 0, {"from": miner})
    assert sonar.credits(ZERO_ADDRESS, miner) == STAKE


def test_settled_updates_do_not_block_close(sonar, owner, short, miner, submit, sleep):
    submit(short, miner)
    sonar.settle(short, [refund()], 0, NEW_MODEL, 0, {"from": owner})
    sleep(101)
    sonar.close(short, {"from": owner})
    assert sonar.getBounty(short)["status"] == BOUNTY_CLOSED


def test_cap_held_back_escrow_is_refunded_at_close(sonar, owner, short, miner, miner2, submit, sleep):
    submit(short, miner)
    submit(short, miner2)
    sonar.settle(short, [accept(5000), accept(5000)], 900_000, NEW_MODEL, 0, {"from": owner})
    tx = sonar.close(short, {"from": owner})
    assert tx.events["BountyClosed"]["refunded"] == REWARD - 2 * CAP


def test_completed_bounty_with_nothing_pending_closes_before_the_deadline(sonar, owner, miner, post, submit):
    bid = post(owner)
    submit(bid, miner)
    sonar.settle(bid, [accept()], 900_000, NEW_MODEL, 0, {"from": owner})
    assert sonar.getBounty(bid)["status"] == BOUNTY_COMPLETED
    tx = sonar.close(bid, {"from": owner})
    assert tx.events["BountyClosed"]["refunded"] == 0


def test_completed_bounty_with_pending_update_waits_for_the_deadline(sonar, owner, miner, miner2, post, submit, E):
    """F-02: a Completed bounty cannot close before its deadline while anything is pending."""
    bid = post(owner)
    submit(bid, miner)
    submit(bid, miner2)
    sonar.settle(bid, [accept()], 900_000, NEW_MODEL, 0, {"from": owner})
    with brownie.reverts(E.SonarDeadlineNotPassed(bid, sonar.getBounty(bid)["deadline"])):
        sonar.close(bid, {"from": owner})
    sonar.settle(bid, [refund()], 0, NEW_MODEL, 0, {"from": owner})
    sonar.close(bid, {"from": owner})


def test_erc20_close_credits_tokens(sonar, token, owner, miner, post, submit, sleep, now):
    bid = post(owner, token=token, deadline=now() + 100)
    submit(bid, miner)
    sonar.settle(bid, [accept()], 820_000, NEW_MODEL, 0, {"from": owner})
    sleep(101)
    sonar.close(bid, {"from": owner})
    assert sonar.credits(token, owner) == REWARD - REWARD // 5
    assert sonar.credits(ZERO_ADDRESS, owner) == 0


# -------------------------------------------------------------------------------------------------
# revealAudit
# -------------------------------------------------------------------------------------------------


def test_auditable_bounty_cannot_close_before_the_audit_is_revealed(sonar, owner, auditable, sleep, E):
    sleep(101)
    with brownie.reverts(E.SonarAuditNotRevealed(auditable)):
        sonar.close(auditable, {"from": owner})


def test_auditable_bounty_closes_after_the_audit_is_revealed(sonar, owner, auditable, sleep):
    tx = sonar.revealAudit(auditable, VALIDATION, AUDIT_CODEC, {"from": owner})
    ev = tx.events["AuditRevealed"]
    assert (ev["bountyId"], ev["digest"], ev["codec"]) == (auditable, "0x" + VALIDATION.hex(), AUDIT_CODEC)
    assert sonar.getBounty(auditable)["auditRevealed"] is True
    sleep(101)
    sonar.close(auditable, {"from": owner})
    assert sonar.credits(ZERO_ADDRESS, owner) == REWARD


def test_reveal_audit_with_another_digest_reverts(sonar, owner, auditable, E):
    wrong = b"\x23" * 32
    with brownie.reverts(E.SonarAuditMismatch(auditable, VALIDATION, wrong)):
        sonar.revealAudit(auditable, wrong, AUDIT_CODEC, {"from": owner})


def test_reveal_audit_twice_reverts(sonar, owner, auditable, E):
    sonar.revealAudit(auditable, VALIDATION, AUDIT_CODEC, {"from": owner})
    with brownie.reverts(E.SonarAuditAlreadyRevealed(auditable)):
        sonar.revealAudit(auditable, VALIDATION, AUDIT_CODEC, {"from": owner})


def test_reveal_audit_by_non_owner_reverts(sonar, auditable, stranger, E):
    with brownie.reverts(E.SonarNotBountyOwner(auditable, stranger)):
        sonar.revealAudit(auditable, VALIDATION, AUDIT_CODEC, {"from": stranger})


def test_non_auditable_bounty_may_reveal_its_audit_too(sonar, owner, short):
    sonar.revealAudit(short, VALIDATION, AUDIT_CODEC, {"from": owner})
    assert sonar.getBounty(short)["auditRevealed"] is True


# -------------------------------------------------------------------------------------------------
# withdraw
# -------------------------------------------------------------------------------------------------


def test_withdraw_sends_eth_credit(sonar, owner, miner, post, submit):
    bid = post(owner)
    submit(bid, miner)
    sonar.settle(bid, [accept()], 820_000, NEW_MODEL, 0, {"from": owner})
    vest_out(sonar, bid, miner)  # after the deadline
    credit = REWARD // 5 + STAKE
    assert sonar.credits(ZERO_ADDRESS, miner) == credit
    before = miner.balance()
    tx = sonar.withdraw(ZERO_ADDRESS, {"from": miner})
    assert miner.balance() == before + credit - gas_cost(tx)
    assert sonar.balance() == REWARD - REWARD // 5
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
    sonar.settle(bid, [accept()], 900_000, NEW_MODEL, 0, {"from": owner})
    vest_out(sonar, bid, miner)  # Completed with nothing pending: at once
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


def test_withdraw_to_contract_that_refuses_eth_reverts(sonar, token, owner, post, impersonate, E):
    """TestToken has no receive(): an ETH credit to it cannot be sent. The credit stays."""
    refuser = impersonate(token.address)
    bid = post(owner)
    sonar.submit(bid, b"\x01" * 32, 0x55, 0, {"from": refuser, "value": STAKE})
    sonar.settle(bid, [accept()], 900_000, NEW_MODEL, 0, {"from": owner})
    vest_out(sonar, bid, refuser)
    with brownie.reverts(E.SonarTransferFailed(refuser, REWARD + STAKE)):
        sonar.withdraw(ZERO_ADDRESS, {"from": refuser})
    assert sonar.credits(ZERO_ADDRESS, refuser) == REWARD + STAKE
    assert sonar.balance() == REWARD + STAKE
