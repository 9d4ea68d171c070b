"""Gas table of Sonar's transactions, and of OpenMined's 2017 Sonar layout as a baseline.

    brownie run scripts/gas_table.py --network development      (or: make gas)

Deploys Sonar, TestToken and contracts/bench/Sonar2017.sol on the dev chain brownie starts, runs
every transaction once, and prints the gas used (from the receipts; 21,000 intrinsic included).
Then it opens 100 bounties and compares commit / reveal / accept of the 1st and the 1000th
submission to one of them: nothing in Sonar loops over submissions or bounties, so they cost the
same (the queue index in the calldata adds a few dozen gas). `main()` returns the figures and
writes them to build/gas.json.
"""

import json
import warnings
from pathlib import Path

from brownie import Sonar, Sonar2017, TestToken, accounts, chain, web3
from eth_abi import encode
from eth_utils import keccak

ZERO = "0x0000000000000000000000000000000000000000"
REWARD = 10**18
STAKE = 10**16
WINDOW = 86400  # long enough for 1000 commits to be revealed in their window
SUBMISSIONS = 1000
OPEN_BOUNTIES = 100
GOALS = {"commit": 80_000, "reveal": 60_000, "accept": 100_000, "withdraw": 45_000}
# the table row each goal is judged on: the steady state (not a bounty's first commit)
GOAL_ROWS = {"commit": "commit", "reveal": "reveal", "accept": "accept (1st credit)", "withdraw": "withdraw (ETH)"}


def word(tag, n):
    """A 32-byte value without zero bytes (zero calldata bytes are cheaper: keep rows comparable)."""
    return bytes(b or 1 for b in keccak(f"{tag}:{n}".encode()))


def commitment(bid, miner, digest, codec, base, salt):
    return keccak(
        encode(["uint256", "address", "bytes32", "uint16", "uint32", "bytes32"], [bid, str(miner), digest, codec, base, salt])
    )


def params(token=ZERO, deadline=None, higher=True, n=0):
    if deadline is None:
        deadline = chain[-1].timestamp + 30 * 86400
    return (token, REWARD, STAKE, deadline, WINDOW, 800_000, 900_000, higher, word("val", n), word("model", n), 0x70)


def send_raw(sender, contract, fn_name, args, value=0, gas=600_000):
    """Send a transaction without brownie's receipt handling (about 1 ms on anvil, vs ~25 ms)."""
    data = getattr(contract, fn_name).encode_input(*args)
    tx = {"from": str(sender), "to": contract.address, "data": data, "value": hex(value), "gas": hex(gas)}
    reply = web3.provider.make_request("eth_sendTransaction", [tx])
    if "error" in reply:
        raise RuntimeError(f"{fn_name}{args}: {reply['error']}")
    return reply["result"]


def assert_mined_ok(txid):
    receipt = web3.eth.wait_for_transaction_receipt(txid, timeout=120, poll_latency=0.05)
    assert receipt["status"] == 1, receipt


def gas_of(sender, contract, fn_name, *args, value=0):
    """Gas used by a raw transaction, from its receipt. (After a thousand blocks brownie's own
    wait sometimes sees the nonce advance before anvil indexes the transaction and reports
    "Tx dropped without known replacement".)"""
    receipt = web3.eth.wait_for_transaction_receipt(send_raw(sender, contract, fn_name, args, value=value), timeout=120, poll_latency=0.02)
    assert receipt["status"] == 1, receipt
    return receipt["gasUsed"]


def submit_measured(sonar, owner, bid, miner, n, score):
    """Commit, reveal and accept one update with raw transactions; their gas."""
    d, s = word("digest", n), word("salt", n)
    index = sonar.getBounty(bid)["submissions"]
    figures = {"index": index}
    figures["commit"] = gas_of(miner, sonar, "commit", bid, commitment(bid, miner, d, 0x55, 0, s), value=STAKE)
    figures["reveal"] = gas_of(miner, sonar, "reveal", bid, index, d, 0x55, 0, s)
    figures["accept"] = gas_of(owner, sonar, "accept", bid, index, score, word("v", n), 0x70)
    return figures


def submit(sonar, bid, miner, n, base=0, value=STAKE):
    """Commit and reveal with brownie (receipts kept); returns (commit tx, reveal tx, index)."""
    d, s = word("digest", n), word("salt", n)
    c = commitment(bid, miner, d, 0x55, base, s)
    ctx = sonar.commit(bid, c, {"from": miner, "value": value})
    index = ctx.events["UpdateCommitted"]["index"]
    rtx = sonar.reveal(bid, index, d, 0x55, base, s, {"from": miner})
    return ctx, rtx, index


def fill_queue(sonar, bid, filler, first_n, count):
    """`count` more submissions by `filler`, committed, then skipped as expired (cheapest way
    to move the queue head past them), all with raw transactions."""
    last = None
    for n in range(first_n, first_n + count):
        c = commitment(bid, filler, word("digest", n), 0x55, 0, word("salt", n))
        last = send_raw(filler, sonar, "commit", (bid, c), value=STAKE)
    assert_mined_ok(last)
    chain.sleep(WINDOW + 1)
    chain.mine()
    for _ in range(count):
        last = send_raw(filler, sonar, "skip", (bid,))
    assert_mined_ok(last)


def measure():
    deployer, owner, owner2, miner, miner2, filler, first, thousandth = (accounts[i] for i in (0, 1, 2, 3, 4, 7, 8, 9))
    sonar = Sonar.deploy({"from": deployer})
    token = TestToken.deploy({"from": deployer})
    old = Sonar2017.deploy({"from": deployer})
    for acct in (owner, owner2, miner):
        token.mint(acct, 100 * REWARD, {"from": deployer})
        token.approve(sonar, 2**256 - 1, {"from": acct})
    gas = {}

    # -- one of everything ---------------------------------------------------------------------------
    sonar.postBounty(params(n=0), {"from": owner, "value": REWARD})  # the very first bounty: warm-up
    gas["postBounty (ETH)"] = sonar.postBounty(params(n=1), {"from": owner, "value": REWARD}).gas_used
    gas["postBounty (ERC-20)"] = sonar.postBounty(params(token=token, n=2), {"from": owner2}).gas_used
    deadline = chain[-1].timestamp + 3600
    bid = sonar.postBounty(params(deadline=deadline, n=3), {"from": owner, "value": REWARD}).events["BountyPosted"]["bountyId"]

    ctx, rtx, i = submit(sonar, bid, miner, 1)
    gas["commit (1st to a bounty)"] = ctx.gas_used
    gas["reveal"] = rtx.gas_used
    gas["accept (1st credit)"] = sonar.accept(bid, i, 850_000, word("v", 1), 0x70, {"from": owner}).gas_used
    ctx, rtx, i = submit(sonar, bid, miner2, 2)
    gas["commit"] = ctx.gas_used
    gas["reject"] = sonar.reject(bid, i, 790_000, 2, {"from": owner}).gas_used
    _, _, i = submit(sonar, bid, miner, 4)
    gas["accept (miner holds a credit)"] = sonar.accept(bid, i, 860_000, word("v", 4), 0x70, {"from": owner}).gas_used
    tok_bid = 3
    ctx, _, i = submit(sonar, tok_bid, miner, 3, value=0)
    gas["commit (ERC-20 stake)"] = ctx.gas_used
    gas["withdraw (ETH)"] = sonar.withdraw(ZERO, {"from": miner}).gas_used
    sonar.accept(tok_bid, i, 900_000, word("v", 3), 0x70, {"from": owner2})
    gas["withdraw (ERC-20)"] = sonar.withdraw(token, {"from": miner}).gas_used
    chain.sleep(3601)
    chain.mine()
    gas["close"] = sonar.close(bid, {"from": owner}).gas_used

    # -- the 2017 baseline -----------------------------------------------------------------------------
    baseline = {}
    old.addModel([word("w", 0), word("w", 1)], 2_000_000, 1_000_000, {"from": owner, "value": REWARD})  # warm-up
    baseline["addModel"] = old.addModel([word("w", 2), word("w", 3)], 2_000_000, 1_000_000, {"from": owner, "value": REWARD}).gas_used
    old.addGradient(1, [word("g", 0), word("g", 1)], {"from": miner})  # warm-up: first gradient
    baseline["addGradient"] = old.addGradient(1, [word("g", 2), word("g", 3)], {"from": miner2}).gas_used
    baseline["evalGradient (improved, pays)"] = old.evalGradient(1, [word("n", 0), word("n", 1)], 1_500_000, {"from": owner}).gas_used
    baseline["evalGradient (not improved)"] = old.evalGradient(0, [word("n", 2), word("n", 3)], 1_900_000, {"from": owner}).gas_used

    # -- 1st vs 1000th submission to one bounty, 100 bounties open (last: after ~2,000 blocks only raw
    # transactions, see gas_of) ---------------------------------------------------------------------
    last = None
    for n in range(sonar.bountyCount(), OPEN_BOUNTIES):
        last = send_raw(owner, sonar, "postBounty", (params(n=n + 1),), value=REWARD)
    assert_mined_ok(last)
    target = OPEN_BOUNTIES // 2  # a bounty in the middle, posted by `owner`
    scale = {"1st": submit_measured(sonar, owner, target, first, 10**6, 810_000)}
    fill_queue(sonar, target, filler, 2 * 10**6, SUBMISSIONS - 2)
    scale[f"{SUBMISSIONS}th"] = submit_measured(sonar, owner, target, thousandth, 3 * 10**6, 820_000)
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
    print(f"  {'transaction':<32}{'gas':>10}")
    for name, used in gas.items():
        print(f"  {name:<32}{used:>10,}")
    n = scale["submissions"]
    print(f"\n1st vs {n}th submission to one bounty ({scale['open_bounties']} bounties open)")
    print(f"  {'':<10}{'1st':>10}{f'{n}th':>10}{'diff':>10}")
    for step in ("commit", "reveal", "accept"):
        a, z = scale["1st"][step], scale[f"{n}th"][step]
        print(f"  {step:<10}{a:>10,}{z:>10,}{a - z:>10,}")
    print("\nBaseline: OpenMined Sonar 2017 layout (contracts/bench/Sonar2017.sol)")
    for name, used in base.items():
        print(f"  {name:<32}{used:>10,}")
    print("\nGoals")
    for name, g in figures["goals"].items():
        met = "met" if g["measured"] <= g["goal"] else "NOT met"
        print(f"  {name:<10} ≤ {g['goal']:>7,}: {g['measured']:>7,}  {met}")


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
