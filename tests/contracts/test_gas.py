"""Gas does not grow with the number of submissions or bounties: nothing loops over them.

With 100 bounties open, `submit` and a one-update `settle` of the 1st and the Nth submission to
one bounty (N = 1000 on anvil; 200 on ganache, which mines ~10× slower) cost the same gas: the
queue index is in storage, not in the calldata, and the digests here have no zero bytes. A round of
many updates costs less per update than a round of one (the round's fixed part is shared), and the
loop is over calldata bounded by MAX_ROUND.

The filler submissions are sent as raw transactions (about 1 ms each on anvil) and settled in
rounds of 32 (refunded), which is how the queue head moves past them.
"""

import os

import pytest
from brownie import web3
from eth_utils import keccak

from conftest import REWARD, STAKE

from mine.contract import CODE_SIZE_LIMIT

OPEN_BOUNTIES = 100
WINDOW = 86400
REFUND = (0, 2, True, False)
SUBMIT_BUDGET = 60_000  # design target ~55k (v1: commit 79k + reveal 42k)


def word(tag, n):
    return bytes(b or 1 for b in keccak(f"{tag}:{n}".encode()))


def send_raw(sender, method, *args, value=0, gas=3_000_000):
    """Send a transaction without brownie's receipt handling: ~1 ms on anvil instead of ~25 ms.
    (Also, after a thousand blocks, brownie's wait sometimes sees the sender's nonce advance
    before anvil indexes the transaction and reports "Tx dropped without known replacement".)"""
    tx = {"from": str(sender), "to": method._address, "data": method.encode_input(*args), "value": hex(value), "gas": hex(gas)}
    reply = web3.provider.make_request("eth_sendTransaction", [tx])
    assert "error" not in reply, reply
    return reply["result"]


def receipt(txid):
    r = web3.eth.wait_for_transaction_receipt(txid, timeout=300, poll_latency=0.02)
    assert r["status"] == 1, r
    return r


@pytest.fixture(scope="module")
def n_submissions():
    """N; the environment variable GAS_N overrides it (e.g. GAS_N=50 for a quick run)."""
    return int(os.environ.get("GAS_N", 0)) or (200 if "ganache" in web3.client_version.lower() else 1000)


@pytest.fixture(scope="module")
def measured(sonar, accounts, params, n_submissions):
    """Gas of submit and of a one-update settle of the 1st, 2nd and Nth submission to bounty 50 of
    100, and of rounds of 8 and 32 updates."""
    owner, filler = accounts[1], accounts[7]
    first, second, nth = accounts[8], accounts[9], accounts[6]
    last = None
    for _ in range(OPEN_BOUNTIES):
        last = send_raw(owner, sonar.postBounty, params(eval_window=WINDOW, target=999_000), value=REWARD)
    receipt(last)
    assert sonar.bountyCount() == OPEN_BOUNTIES
    bid = OPEN_BOUNTIES // 2
    score = [800_000]

    def one(miner, n):
        index = sonar.getBounty(bid)["submissions"]
        s = receipt(send_raw(miner, sonar.submit, bid, word("d", n), 0x55, 0, value=STAKE))
        score[0] += 1000
        a = receipt(send_raw(owner, sonar.settle, bid, [(10_000, 0, False, False)], score[0], word("m", n), 0x70))
        assert sonar.getSubmission(bid, index)["status"] == 2  # Accepted
        return {"index": index, "submit": s["gasUsed"], "settle": a["gasUsed"]}

    def fill(count, start):
        """`count` filler submissions, settled in refunded rounds of up to 32."""
        if count <= 0:
            return
        for n in range(start, start + count):
            last = send_raw(filler, sonar.submit, bid, word("d", n), 0x55, 0, value=STAKE)
        receipt(last)
        while count:
            k = min(count, 32)
            last = send_raw(owner, sonar.settle, bid, [REFUND] * k, 0, word("m", 0), 0x70)
            count -= k
        receipt(last)

    def round_of(k, start):
        """Per-update gas of a round of k accepted updates by miners who already have something
        vesting in the bounty (the steady state: a warm, non-zero vesting slot)."""
        for n in range(start, start + k):
            last = send_raw(accounts[8 + n % 2], sonar.submit, bid, word("d", n), 0x55, 0, value=STAKE)
        receipt(last)
        shares = [(10_000 // k + (10_000 % k if i == 0 else 0), 0, False, False) for i in range(k)]
        score[0] += 1000
        r = receipt(send_raw(owner, sonar.settle, bid, shares, score[0], word("m", start), 0x70))
        return r["gasUsed"]

    gas = {"1st": one(first, 1), "2nd": one(second, 2)}
    fill(n_submissions - 3, 3)
    gas["nth"] = one(nth, n_submissions)
    assert gas["nth"]["index"] == n_submissions - 1
    gas["round1"] = round_of(1, 10**6)
    gas["round8"] = round_of(8, 2 * 10**6)
    gas["round32"] = round_of(32, 3 * 10**6)
    return gas


def test_submit_gas_of_the_nth_submission_equals_the_1st(measured):
    assert measured["nth"]["submit"] == measured["1st"]["submit"] == measured["2nd"]["submit"]


def test_settle_gas_of_the_nth_submission_equals_the_1st(measured):
    # both miners are fresh accounts, so both settlements create a vesting slot
    assert measured["nth"]["settle"] == measured["1st"]["settle"]


def test_submit_is_within_budget(measured):
    assert measured["1st"]["submit"] <= SUBMIT_BUDGET


def test_a_round_costs_less_per_update_than_single_settlements(measured):
    per8, per32 = measured["round8"] / 8, measured["round32"] / 32
    assert per32 < per8 < measured["round1"]


def test_per_update_gas_of_a_full_round_is_bounded(measured):
    """Each extra accepted update costs a submission-slot rewrite, a warm vesting slot, an event: O(1)."""
    assert measured["round32"] / 32 <= 20_000


def test_sonar_fits_the_public_chain_code_size_limit(sonar):
    """As brownie compiles it (optimizer, 10,000 runs), Sonar is deployable on mainnet (EIP-170);
    anvil and ganache enforce the limit too, so a larger contract would fail every test's deploy."""
    size = len(web3.eth.get_code(sonar.address))
    assert 0 < size <= CODE_SIZE_LIMIT, size
