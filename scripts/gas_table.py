"""Gas table of Sonar's transactions, and of OpenMined's 2017 Sonar layout as a baseline.

    brownie run scripts/gas_table.py --network development      (or: make gas)

Deploys Sonar, TestToken and contracts/bench/Sonar2017.sol on the dev chain brownie starts, runs
every transaction once, and prints the gas used (from the receipts; 21,000 intrinsic included).
`submit` is one transaction where v1 took two (commit + reveal, shown as the reference it replaces).
`settle` is shown per submission for rounds of 1, 8 and 32. Then it opens 100 bounties and
compares submit and a one-update settle of the 1st and the 1000th submission to one of them:
nothing in Sonar loops over submissions or bounties, so they cost the same. `main()` returns the
figures and writes them to build/gas.json.
"""

import json
import warnings
from pathlib import Path

from brownie import Sonar, Sonar2017, TestToken, accounts, chain, web3
from eth_utils import keccak

ZERO = "0x0000000000000000000000000000000000000000"
REWARD = 10**18
STAKE = 10**16
WINDOW = 86400  # long enough for 1000 submissions to be settled in their window
SUBMISSIONS = 1000
OPEN_BOUNTIES = 100
# v1 (commit–reveal) figures, measured with `make gas` at commit f4f4ef9 (the last v1 contract):
# the reference a single-transaction submit replaces (v1 accept was 99,749, reject 63,397)
V1_COMMIT, V1_REVEAL = 79_346, 41_612
GOALS = {"submit": 60_000, "settle per update (round of 32)": 20_000, "withdraw": 45_000}
GOAL_ROWS = {"submit": "submit", "settle per update (round of 32)": "settle: round of 32, per update",
             "withdraw": "withdraw (ETH)"}
ACCEPT, REFUND, FORFEIT = (10_000, 0, False, False), (0, 2, True, False), (0, 4, False, False)
CLAWBACK = (0, 9, False, True)  # forfeited, and the miner's vesting rewards burned


def word(tag, n):
    """A 32-byte value without zero bytes (zero calldata bytes are cheaper: keep rows comparable)."""
    return bytes(b or 1 for b in keccak(f"{tag}:{n}".encode()))


def params(token=ZERO, deadline=None, higher=True, n=0, auditable=False):
    if deadline is None:
        deadline = chain[-1].timestamp + 30 * 86400
    return (token, REWARD, STAKE, deadline, WINDOW, 800_000, 999_000, higher, word("val", n), word("model", n), 0x70,
            auditable)


def shares(k):
    return [(10_000 // k + (10_000 % k if i == 0 else 0), 0, False, False) for i in range(k)]


def send_raw(sender, contract, fn_name, args, value=0, gas=3_000_000):
    """Send a transaction without brownie's receipt handling (about 1 ms on anvil, vs ~25 ms)."""
    data = getattr(contract, fn_name).encode_input(*args)
    tx = {"from": str(sender), "to": contract.address, "data": data, "value": hex(value), "gas": hex(gas)}
    reply = web3.provider.make_request("eth_sendTransaction", [tx])
    if "error" in reply:
        raise RuntimeError(f"{fn_name}{args}: {reply['error']}")
    return reply["result"]


def mined(txid):
    receipt = web3.eth.wait_for_transaction_receipt(txid, timeout=120, poll_latency=0.02)
    assert receipt["status"] == 1, receipt
    return receipt


def gas_of(sender, contract, fn_name, *args, value=0):
    """Gas used by a raw transaction, from its receipt. (After a thousand blocks brownie's own
    wait sometimes sees the nonce advance before anvil indexes the transaction and reports
    "Tx dropped without known replacement".)"""
    return mined(send_raw(sender, contract, fn_name, args, value=value))["gasUsed"]


class Scores:
    """Strictly improving scores for successive accepted rounds."""

    def __init__(self):
        self.score = 800_000

    def next(self):
        self.score += 500
        return self.score


def submit_all(sonar, bid, miners, n0, value=STAKE):
    """One submission per miner in `miners` (raw transactions); gas of the last."""
    last = None
    for k, miner in enumerate(miners):
        last = send_raw(miner, sonar, "submit", (bid, word("digest", n0 + k), 0x55, 0), value=value)
    return mined(last)["gasUsed"]


def measure():
    deployer, owner, owner2, miner, miner2, filler, first, thousandth = (accounts[i] for i in (0, 1, 2, 3, 4, 7, 8, 9))
    sonar = Sonar.deploy({"from": deployer})
    token = TestToken.deploy({"from": deployer})
    old = Sonar2017.deploy({"from": deployer})
    for acct in (owner, owner2, miner):
        token.mint(acct, 100 * REWARD, {"from": deployer})
        token.approve(sonar, 2**256 - 1, {"from": acct})
    gas = {}
    scores = Scores()

    # -- one of everything ---------------------------------------------------------------------------
    sonar.postBounty(params(n=0), {"from": owner, "value": REWARD})  # the very first bounty: warm-up
    gas["postBounty (ETH)"] = sonar.postBounty(params(n=1), {"from": owner, "value": REWARD}).gas_used
    gas["postBounty (ERC-20)"] = sonar.postBounty(params(token=token, n=2), {"from": owner2}).gas_used
    deadline = chain[-1].timestamp + 3600
    bid = sonar.postBounty(params(deadline=deadline, n=3, auditable=True), {"from": owner, "value": REWARD}).events[
        "BountyPosted"]["bountyId"]
    tok_bid = 3

    gas["submit"] = submit_all(sonar, bid, [miner], 1)
    gas["v1 commit + reveal (reference)"] = V1_COMMIT + V1_REVEAL
    gas["submit (ERC-20 stake)"] = submit_all(sonar, tok_bid, [miner], 2, value=0)
    gas["settle: 1 accepted (1st credit)"] = gas_of(owner, sonar, "settle", bid, [ACCEPT], scores.next(), word("v", 1), 0x70)
    submit_all(sonar, bid, [miner2], 3)
    gas["settle: 1 rejected, refunded"] = gas_of(owner, sonar, "settle", bid, [REFUND], 0, word("v", 0), 0)
    submit_all(sonar, bid, [miner2], 4)
    gas["settle: 1 rejected, forfeited"] = gas_of(owner, sonar, "settle", bid, [FORFEIT], 0, word("v", 0), 0)
    submit_all(sonar, bid, [miner], 5)
    gas["settle: 1 accepted (holds a credit)"] = gas_of(owner, sonar, "settle", bid, [ACCEPT], scores.next(), word("v", 2), 0x70)
    # rounds of k accepted updates, from miners who already hold a credit (the steady state)
    for k in (1, 8, 32):
        submit_all(sonar, bid, [miner, miner2] * (k // 2) or [miner], 100 * k)
        used = gas_of(owner, sonar, "settle", bid, shares(k), scores.next(), word("v", k), 0x70)
        gas[f"settle: round of {k}"] = used
        gas[f"settle: round of {k}, per update"] = used // k
    submit_all(sonar, bid, [miner] * 32, 5000)
    used = gas_of(owner, sonar, "settle", bid, [REFUND] * 32, 0, word("v", 0), 0)
    gas["settle: round of 32 refunded, per update"] = used // 32
    submit_all(sonar, bid, [miner] * 32, 6000)
    used = gas_of(owner, sonar, "settle", bid, [FORFEIT] * 32, 0, word("v", 0), 0)
    gas["settle: round of 32 forfeited, per update"] = used // 32
    submit_all(sonar, bid, [miner2], 6500)
    gas["settle: 1 forfeited with clawback"] = gas_of(owner, sonar, "settle", bid, [CLAWBACK], 0, word("v", 0), 0)
    gas["withdraw (ETH)"] = sonar.withdraw(ZERO, {"from": miner}).gas_used  # the 32 refunded stakes
    sonar.settle(tok_bid, [ACCEPT], 999_000, word("v", 3), 0x70, {"from": owner2})  # Completed: vesting ends
    gas["release"] = sonar.release(tok_bid, miner, {"from": miner}).gas_used
    gas["withdraw (ERC-20)"] = sonar.withdraw(token, {"from": miner}).gas_used
    gas["revealAudit"] = sonar.revealAudit(bid, word("val", 3), 0x55, {"from": owner}).gas_used
    submit_all(sonar, bid, [miner2], 7000)
    chain.sleep(WINDOW + 1)
    chain.mine()
    gas["skip (expired, stake returned)"] = sonar.skip(bid, {"from": miner}).gas_used
    submit_all(sonar, 2, [miner2], 7001)  # bounty 2 (ETH, window of a day)
    chain.sleep(WINDOW + 1)
    chain.mine()
    gas["reclaimStake"] = sonar.reclaimStake(2, 0, {"from": miner2}).gas_used
    gas["close (burns the forfeit pool)"] = sonar.close(bid, {"from": owner}).gas_used

    # -- the 2017 baseline -----------------------------------------------------------------------------
    baseline = {}
    old.addModel([word("w", 0), word("w", 1)], 2_000_000, 1_000_000, {"from": owner, "value": REWARD})  # warm-up
    baseline["addModel"] = old.addModel([word("w", 2), word("w", 3)], 2_000_000, 1_000_000, {"from": owner, "value": REWARD}).gas_used
    old.addGradient(1, [word("g", 0), word("g", 1)], {"from": miner})  # warm-up: first gradient
    baseline["addGradient"] = old.addGradient(1, [word("g", 2), word("g", 3)], {"from": miner2}).gas_used
    baseline["evalGradient (improved, pays)"] = old.evalGradient(1, [word("n", 0), word("n", 1)], 1_500_000, {"from": owner}).gas_used
    baseline["evalGradient (not improved)"] = old.evalGradient(0, [word("n", 2), word("n", 3)], 1_900_000, {"from": owner}).gas_used

    # -- 1st vs 1000th submission to one bounty, 100 bounties open (raw transactions only, see gas_of)
    last = None
    for n in range(sonar.bountyCount(), OPEN_BOUNTIES):
        last = send_raw(owner, sonar, "postBounty", (params(n=n + 1),), value=REWARD)
    mined(last)
    target = OPEN_BOUNTIES // 2  # a bounty in the middle, posted by `owner`
    target_scores = Scores()

    def one(miner_, n):
        index = sonar.getBounty(target)["submissions"]
        s = submit_all(sonar, target, [miner_], n)
        a = gas_of(owner, sonar, "settle", target, [ACCEPT], target_scores.next(), word("v", n), 0x70)
        return {"index": index, "submit": s, "settle": a}

    scale = {"1st": one(first, 10**6)}
    # submissions 2 .. 999 by the filler, settled (refunded) in rounds of 32
    count = SUBMISSIONS - 2
    for n in range(count):
        last = send_raw(filler, sonar, "submit", (target, word("digest", 2 * 10**6 + n), 0x55, 0), value=STAKE)
    mined(last)
    while count:
        k = min(count, 32)
        last = send_raw(owner, sonar, "settle", (target, [REFUND] * k, 0, word("v", 0), 0))
        count -= k
    mined(last)
    scale[f"{SUBMISSIONS}th"] = one(thousandth, 3 * 10**6)
    assert scale[f"{SUBMISSIONS}th"]["index"] == SUBMISSIONS - 1 and sonar.bountyCount() >= OPEN_BOUNTIES

    return {
        "sonar": gas,
        "scaling": {"open_bounties": sonar.bountyCount(), "submissions": SUBMISSIONS, **scale},
        "sonar2017": baseline,
        "goals": {k: {"goal": v, "measured": gas[GOAL_ROWS[k]]} for k, v in GOALS.items()},
    }


def print_table(figures):
    gas, scale, base = figures["sonar"], figures["scaling"], figures["sonar2017"]
    print("\nSonar — gas used per transaction (receipts; 21,000 intrinsic included)")
    print(f"  {'transaction':<44}{'gas':>10}")
    for name, used in gas.items():
        print(f"  {name:<44}{used:>10,}")
    print(f"  submit / (v1 commit + reveal) = {gas['submit'] / gas['v1 commit + reveal (reference)']:.2f}")
    n = scale["submissions"]
    print(f"\n1st vs {n}th submission to one bounty ({scale['open_bounties']} bounties open)")
    print(f"  {'':<10}{'1st':>10}{f'{n}th':>10}{'diff':>10}")
    for step in ("submit", "settle"):
        a, z = scale["1st"][step], scale[f"{n}th"][step]
        print(f"  {step:<10}{a:>10,}{z:>10,}{z - a:>10,}")
    print("\nBaseline: OpenMined Sonar 2017 layout (contracts/bench/Sonar2017.sol)")
    for name, used in base.items():
        print(f"  {name:<44}{used:>10,}")
    print(f"  submit / addGradient = {gas['submit'] / base['addGradient']:.2f}")
    print("\nGoals")
    for name, g in figures["goals"].items():
        met = "met" if g["measured"] <= g["goal"] else "NOT met"
        print(f"  {name:<34} ≤ {g['goal']:>7,}: {g['measured']:>7,}  {met}")


def main():
    # brownie 1.22 warns about its own internal rpc.sleep/rpc.snapshot calls on every chain.sleep
    warnings.filterwarnings("ignore", category=FutureWarning, module="brownie")
    warnings.filterwarnings("ignore", message="rpc\\.", category=FutureWarning)
    figures = measure()
    print_table(figures)
    out = Path(__file__).resolve().parent.parent / "build" / "gas.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"\nwritten to {out}")
    return figures
