"""Gas does not grow with the number of submissions or bounties: nothing loops over them.

With 100 bounties open, commit / reveal / accept of the 1st and the Nth submission to one bounty
(N = 1000 on anvil; 200 on ganache, which mines ~10× slower) cost the same gas, except for
calldata: the queue index in reveal/accept calldata has more nonzero bytes (16 instead of 4 gas
  a byte), a few dozen gas. Digests and salts here have no zero bytes, so the rest is equal.

The filler submissions are sent as raw transactions (about 1 ms each on anvil) and skipped as
expired, which is the cheapest way to move the queue head past them.
"""

import os

import pytest
from brownie import web3
from eth_abi import encode
from eth_utils import keccak

from conftest import REWARD, STAKE

OPEN_BOUNTIES = 100
CALLDATA_SLACK = 100  # a few nonzero index bytes at 12 gas each
WINDOW = 86400


def word(tag, n):
    return bytes(b or 1 for b in keccak(f"{tag}:{n}".encode()))


def commitment(bid, miner, n):
    return keccak(
        encode(
            ["uint256", "address", "bytes32", "uint16", "uint32", "bytes32"],
            [bid, str(miner), word("d", n), 0x55, 0, word("s", n)],
        )
    )


def send_raw(sender, method, *args, value=0):
    """Send a transaction without brownie's receipt handling: ~1 ms on anvil instead of ~25 ms.
    (Also, after a thousand blocks, brownie's wait sometimes sees the sender's nonce advance
    before anvil indexes the transaction and reports "Tx dropped without known replacement".)"""
    tx = {"from": str(sender), "to": method._address, "data": method.encode_input(*args), "value": hex(value), "gas": hex(600_000)}
    reply = web3.provider.make_request("eth_sendTransaction", [tx])
    assert "error" not in reply, reply
    return reply["result"]


def receipt(txid):
    r = web3.eth.wait_for_transaction_receipt(txid, timeout=300, poll_latency=0.02)
    assert r["status"] == 1, r
    return r


def mined_ok(txid):
    return receipt(txid)["status"] == 1


@pytest.fixture(scope="module")
def n_submissions():
    """N; the environment variable GAS_N overrides it (e.g. GAS_N=50 for a quick run)."""
    return int(os.environ.get("GAS_N", 0)) or (200 if "ganache" in web3.client_version.lower() else 1000)


@pytest.fixture(scope="module")
def measured(sonar, accounts, params, chain, n_submissions):
    """Gas of commit/reveal/accept of the 1st, 2nd and Nth submission to bounty 50 of 100."""
    owner, filler = accounts[1], accounts[7]
    first, second, nth = accounts[8], accounts[9], accounts[6]
    last = None
    for _ in range(OPEN_BOUNTIES):
        last = send_raw(owner, sonar.postBounty, params(eval_window=WINDOW), value=REWARD)
    assert mined_ok(last) and sonar.bountyCount() == OPEN_BOUNTIES
    bid = OPEN_BOUNTIES // 2

    def submit_measured(miner, n, score):
        index = sonar.getBounty(bid)["submissions"]
        c = receipt(send_raw(miner, sonar.commit, bid, commitment(bid, miner, n), value=STAKE))
        r = receipt(send_raw(miner, sonar.reveal, bid, index, word("d", n), 0x55, 0, word("s", n)))
        a = receipt(send_raw(owner, sonar.accept, bid, index, score, word("m", n), 0x70))
        assert sonar.getSubmission(bid, index)["status"] == 3  # Accepted
        return {"index": index, "commit": c["gasUsed"], "reveal": r["gasUsed"], "accept": a["gasUsed"]}

    gas = {"1st": submit_measured(first, 1, 810_000), "2nd": submit_measured(second, 2, 820_000)}
    # submissions 3 .. N-1: committed by the filler, expired, skipped
    for n in range(3, n_submissions):
        last = send_raw(filler, sonar.commit, bid, commitment(bid, filler, n), value=STAKE)
    assert mined_ok(last)
    chain.sleep(WINDOW + 1)
    chain.mine()
    for _ in range(3, n_submissions):
        last = send_raw(filler, sonar.skip, bid)
    assert mined_ok(last)
    gas["nth"] = submit_measured(nth, n_submissions, 830_000)
    assert gas["nth"]["index"] == n_submissions - 1
    return gas


def test_commit_gas_of_nth_submission_equals_the_2nd(measured):
    assert abs(measured["nth"]["commit"] - measured["2nd"]["commit"]) <= CALLDATA_SLACK


def test_first_commit_costs_the_same_as_later_ones(measured):
    # the queue counters share their slot with the escrow, which is nonzero from posting on
    assert abs(measured["1st"]["commit"] - measured["nth"]["commit"]) <= CALLDATA_SLACK


def test_reveal_gas_of_1st_and_nth_submission_are_equal(measured):
    assert abs(measured["nth"]["reveal"] - measured["1st"]["reveal"]) <= CALLDATA_SLACK


def test_accept_gas_of_1st_and_nth_submission_are_equal(measured):
    # both miners are fresh accounts, so both accepts create a credit slot
    assert abs(measured["nth"]["accept"] - measured["1st"]["accept"]) <= CALLDATA_SLACK


def test_gas_is_within_budget(measured):
    """The goals (figures in scripts/gas_table.py / build/gas.json): commit ≤ 80k, reveal ≤ 60k,
    accept ≤ 100k even when it creates the miner's first credit (both miners here are fresh)."""
    for which in ("1st", "nth"):
        assert measured[which]["commit"] <= 80_000
        assert measured[which]["reveal"] <= 60_000
        assert measured[which]["accept"] <= 100_000
