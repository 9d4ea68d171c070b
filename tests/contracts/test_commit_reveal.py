"""commit and reveal: stakes, queue order, deadline, commitment binding, reveal window."""

import brownie
import pytest

from conftest import (
    BOUNTY_COMPLETED,
    BOUNTY_CLOSED,
    STAKE,
    SUB_COMMITTED,
    SUB_REVEALED,
    WINDOW,
    digest_for,
    salt_for,
)


@pytest.fixture
def bounty(owner, post):
    return post(owner)


def commitment(sonar, bid, miner, n=1, codec=0x55, base=0):
    return sonar.commitmentOf(bid, miner, digest_for(n), codec, base, salt_for(n))


# -------------------------------------------------------------------------------------------------
# commit
# -------------------------------------------------------------------------------------------------


def test_commit_takes_the_eth_stake(sonar, bounty, miner):
    before = miner.balance()
    sonar.commit(bounty, commitment(sonar, bounty, miner), {"from": miner, "value": STAKE})
    assert sonar.balance() == 10**18 + STAKE
    assert miner.balance() <= before - STAKE


def test_commit_with_wrong_stake_reverts(sonar, bounty, miner, E):
    c = commitment(sonar, bounty, miner)
    with brownie.reverts(E.SonarWrongPayment(STAKE, STAKE - 1)):
        sonar.commit(bounty, c, {"from": miner, "value": STAKE - 1})
    with brownie.reverts(E.SonarWrongPayment(STAKE, 0)):
        sonar.commit(bounty, c, {"from": miner})


def test_commit_to_erc20_bounty_pulls_token_stake(sonar, token, owner, miner, post):
    bid = post(owner, token=token)
    before = token.balanceOf(miner)
    sonar.commit(bid, commitment(sonar, bid, miner), {"from": miner})
    assert token.balanceOf(miner) == before - STAKE
    assert token.balanceOf(sonar) == 10**18 + STAKE


def test_commit_to_erc20_bounty_with_eth_reverts(sonar, token, owner, miner, post, E):
    bid = post(owner, token=token)
    with brownie.reverts(E.SonarWrongPayment(0, STAKE)):
        sonar.commit(bid, commitment(sonar, bid, miner), {"from": miner, "value": STAKE})


def test_commit_with_zero_stake_bounty_is_free(sonar, owner, miner, post):
    bid = post(owner, stake=0)
    sonar.commit(bid, commitment(sonar, bid, miner), {"from": miner})
    assert sonar.getSubmission(bid, 0)["status"] == SUB_COMMITTED


def test_commit_records_submission(sonar, bounty, miner):
    c = commitment(sonar, bounty, miner)
    tx = sonar.commit(bounty, c, {"from": miner, "value": STAKE})
    s = sonar.getSubmission(bounty, 0)
    assert s["miner"] == miner
    assert s["status"] == SUB_COMMITTED
    assert s["digest"] == c
    assert s["committedAt"] == tx.timestamp
    assert (s["baseVersion"], s["codec"]) == (0, 0)
    b = sonar.getBounty(bounty)
    assert (b["submissions"], b["pending"]) == (1, 1)
    assert b["lastDue"] == tx.timestamp + 2 * WINDOW


def test_commit_emits_update_committed(sonar, bounty, miner):
    c = commitment(sonar, bounty, miner)
    tx = sonar.commit(bounty, c, {"from": miner, "value": STAKE})
    ev = tx.events["UpdateCommitted"]
    assert (ev["bountyId"], ev["index"], ev["miner"]) == (bounty, 0, miner)
    assert ev["commitment"] == c
    assert tx.return_value == 0


def test_commit_indexes_follow_commit_order(sonar, bounty, miner, miner2, miner3):
    order = [miner2, miner, miner3, miner]
    for i, m in enumerate(order):
        tx = sonar.commit(bounty, commitment(sonar, bounty, m, n=i), {"from": m, "value": STAKE})
        assert tx.events["UpdateCommitted"]["index"] == i
    for i, m in enumerate(order):
        assert sonar.getSubmission(bounty, i)["miner"] == m
    assert sonar.getBounty(bounty)["submissions"] == 4


def test_commit_indexes_are_per_bounty(sonar, owner, owner2, miner, post):
    a, b = post(owner), post(owner2)
    sonar.commit(a, commitment(sonar, a, miner), {"from": miner, "value": STAKE})
    tx = sonar.commit(b, commitment(sonar, b, miner), {"from": miner, "value": STAKE})
    assert tx.events["UpdateCommitted"]["index"] == 0


def test_commit_zero_commitment_reverts(sonar, bounty, miner, E):
    with brownie.reverts(E.SonarInvalidParams("commitment")):
        sonar.commit(bounty, b"\x00" * 32, {"from": miner, "value": STAKE})


def test_commit_after_deadline_reverts(sonar, owner, miner, post, sleep, E, now):
    deadline = now() + 1000
    bid = post(owner, deadline=deadline)
    sleep(1001)
    with brownie.reverts(E.SonarDeadlinePassed(bid, deadline)):
        sonar.commit(bid, commitment(sonar, bid, miner), {"from": miner, "value": STAKE})


def test_commit_just_before_deadline_succeeds(sonar, owner, miner, post, sleep, now):
    bid = post(owner, deadline=now() + 1000)
    sleep(900)
    sonar.commit(bid, commitment(sonar, bid, miner), {"from": miner, "value": STAKE})


def test_commit_to_unknown_bounty_reverts(sonar, miner, E):
    with brownie.reverts(E.SonarUnknownBounty(1)):
        sonar.commit(1, b"\x01" * 32, {"from": miner, "value": STAKE})


def test_commit_to_closed_bounty_reverts(sonar, owner, miner, post, sleep, E, now):
    bid = post(owner, deadline=now() + 100)
    sleep(101)
    sonar.close(bid, {"from": owner})
    with brownie.reverts(E.SonarBountyNotOpen(bid, BOUNTY_CLOSED)):
        sonar.commit(bid, commitment(sonar, bid, miner), {"from": miner, "value": STAKE})


def test_commit_to_completed_bounty_reverts(sonar, owner, miner, bounty, submit, E):
    u = submit(bounty, miner)
    sonar.accept(bounty, u.index, 900_000, b"\x01" * 32, 0, {"from": owner})
    with brownie.reverts(E.SonarBountyNotOpen(bounty, BOUNTY_COMPLETED)):
        sonar.commit(bounty, commitment(sonar, bounty, miner), {"from": miner, "value": STAKE})


# -------------------------------------------------------------------------------------------------
# reveal
# -------------------------------------------------------------------------------------------------


def test_commitment_of_matches_keccak_of_abi_encoding(sonar, bounty, miner):
    from eth_abi import encode
    from eth_utils import keccak

    d, s = digest_for(7), salt_for(7)
    expected = keccak(
        encode(
            ["uint256", "address", "bytes32", "uint16", "uint32", "bytes32"],
            [bounty, miner.address, d, 0x70, 3, s],
        )
    )
    assert sonar.commitmentOf(bounty, miner, d, 0x70, 3, s) == "0x" + expected.hex()


def test_reveal_with_matching_commitment_records_cid(sonar, bounty, miner, submit):
    u = submit(bounty, miner, reveal=False, codec=0x70)
    sonar.reveal(*u.reveal_args(), {"from": miner})
    s = sonar.getSubmission(bounty, u.index)
    assert s["status"] == SUB_REVEALED
    assert s["digest"] == "0x" + u.digest.hex()
    assert s["codec"] == 0x70
    assert s["baseVersion"] == 0


def test_reveal_emits_update_revealed(sonar, bounty, miner, submit):
    u = submit(bounty, miner, reveal=False)
    tx = sonar.reveal(*u.reveal_args(), {"from": miner})
    ev = tx.events["UpdateRevealed"]
    assert (ev["bountyId"], ev["index"], ev["miner"]) == (bounty, 0, miner)
    assert (ev["digest"], ev["codec"], ev["baseVersion"]) == ("0x" + u.digest.hex(), 0x55, 0)


def test_reveal_does_not_change_pending_count(sonar, bounty, miner, submit):
    submit(bounty, miner)
    assert sonar.getBounty(bounty)["pending"] == 1


def test_reveal_with_wrong_salt_reverts(sonar, bounty, miner, submit, E):
    u = submit(bounty, miner, reveal=False)
    with brownie.reverts(E.SonarCommitmentMismatch(bounty, 0)):
        sonar.reveal(bounty, 0, u.digest, u.codec, 0, salt_for(999), {"from": miner})


def test_reveal_with_wrong_digest_reverts(sonar, bounty, miner, submit, E):
    u = submit(bounty, miner, reveal=False)
    with brownie.reverts(E.SonarCommitmentMismatch(bounty, 0)):
        sonar.reveal(bounty, 0, digest_for(999), u.codec, 0, u.salt, {"from": miner})


def test_reveal_with_wrong_codec_reverts(sonar, bounty, miner, submit, E):
    u = submit(bounty, miner, reveal=False, codec=0x55)
    with brownie.reverts(E.SonarCommitmentMismatch(bounty, 0)):
        sonar.reveal(bounty, 0, u.digest, 0x70, 0, u.salt, {"from": miner})


def test_reveal_with_other_base_version_reverts(sonar, owner, bounty, miner, miner2, submit, E):
    # make version 1 exist, so that base 1 passes the version check and fails the commitment
    first = submit(bounty, miner2)
    sonar.accept(bounty, first.index, 810_000, b"\x01" * 32, 0, {"from": owner})
    u = submit(bounty, miner, reveal=False, base=0)
    with brownie.reverts(E.SonarCommitmentMismatch(bounty, u.index)):
        sonar.reveal(bounty, u.index, u.digest, u.codec, 1, u.salt, {"from": miner})


def test_reveal_by_other_miner_reverts(sonar, bounty, miner, miner2, submit, E):
    u = submit(bounty, miner, reveal=False)
    with brownie.reverts(E.SonarNotSubmissionMiner(bounty, 0, miner2)):
        sonar.reveal(*u.reveal_args(), {"from": miner2})


def test_reveal_of_uncommitted_index_reverts(sonar, bounty, miner, E):
    with brownie.reverts(E.SonarNotSubmissionMiner(bounty, 0, miner)):
        sonar.reveal(bounty, 0, digest_for(1), 0x55, 0, salt_for(1), {"from": miner})


def test_reveal_twice_reverts(sonar, bounty, miner, submit, E):
    u = submit(bounty, miner)
    with brownie.reverts(E.SonarWrongStatus(bounty, 0, SUB_REVEALED)):
        sonar.reveal(*u.reveal_args(), {"from": miner})


def test_reveal_after_window_reverts(sonar, bounty, miner, submit, sleep, E):
    u = submit(bounty, miner, reveal=False)
    committed_at = sonar.getSubmission(bounty, 0)["committedAt"]
    sleep(WINDOW + 1)
    with brownie.reverts(E.SonarRevealWindowClosed(bounty, 0, committed_at + WINDOW)):
        sonar.reveal(*u.reveal_args(), {"from": miner})


def test_reveal_late_in_window_succeeds(sonar, bounty, miner, submit, sleep):
    u = submit(bounty, miner, reveal=False)
    sleep(WINDOW - 60)
    sonar.reveal(*u.reveal_args(), {"from": miner})
    assert sonar.getSubmission(bounty, 0)["status"] == SUB_REVEALED


def test_reveal_with_unknown_base_version_reverts(sonar, bounty, miner, submit, E):
    u = submit(bounty, miner, reveal=False, base=1)
    with brownie.reverts(E.SonarUnknownVersion(bounty, 1)):
        sonar.reveal(*u.reveal_args(), {"from": miner})


def test_reveal_on_newer_base_version_succeeds(sonar, owner, bounty, miner, miner2, submit):
    first = submit(bounty, miner2)
    sonar.accept(bounty, first.index, 810_000, b"\x01" * 32, 0, {"from": owner})
    u = submit(bounty, miner, base=1)
    assert sonar.getSubmission(bounty, u.index)["baseVersion"] == 1


def test_reveal_on_unknown_bounty_reverts(sonar, miner, E):
    with brownie.reverts(E.SonarUnknownBounty(3)):
        sonar.reveal(3, 0, digest_for(1), 0x55, 0, salt_for(1), {"from": miner})


def test_get_submission_of_uncommitted_index_reverts(sonar, bounty, miner, submit, E):
    submit(bounty, miner)
    with brownie.reverts(E.SonarUnknownSubmission(bounty, 1)):
        sonar.getSubmission(bounty, 1)


def test_commitment_binds_miner_address(sonar, bounty, miner, miner2):
    d, s = digest_for(1), salt_for(1)
    assert sonar.commitmentOf(bounty, miner, d, 0, 0, s) != sonar.commitmentOf(bounty, miner2, d, 0, 0, s)


def test_commitment_binds_bounty_id(sonar, miner):
    d, s = digest_for(1), salt_for(1)
    assert sonar.commitmentOf(1, miner, d, 0, 0, s) != sonar.commitmentOf(2, miner, d, 0, 0, s)

