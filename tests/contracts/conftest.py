"""Fixtures for the Sonar contract tests (brownie, against the anvil or ganache brownie starts).

Contracts are deployed once per module; `fn_isolation` (autouse) snapshots the chain after the
module fixtures and reverts to it before every test, so each test starts from the same state.

Helpers are fixtures too (the brownie-mix way): `E` formats the revert string brownie gives a
custom error, `params` builds a `BountyParams` tuple, `post` posts a bounty, `submit` submits an
update, `accept`/`reject`/`refund`/`clawback` build verdicts, `round_model` predicts a settlement,
`sleep` moves time forward, `vest_out` waits for a bounty's vesting to end and releases it.

Accepted rewards and their stakes vest (`getVesting`) until the bounty can settle nothing more;
`release` moves them to the miner's credits, which `withdraw` pays out.
"""

import pytest
from brownie import ZERO_ADDRESS, chain

# 6-decimal fixed-point scores (SCORE_SCALE = 1e6)
SCALE = 10**6
REWARD = 10**18  # 1 ETH / 1 token
STAKE = 10**16  # 0.01
WINDOW = 3600  # evalWindow: an hour to reveal, another to evaluate
DURATION = 7 * 86400  # deadline = now + a week
MODEL_DIGEST = b"\x11" * 32
VALIDATION = b"\x22" * 32

BURN = "0x000000000000000000000000000000000000dEaD"
NEW_MODEL = b"\x33" * 32

# ISonar enums
BOUNTY_NONE, BOUNTY_OPEN, BOUNTY_COMPLETED, BOUNTY_CLOSED = range(4)
SUB_NONE, SUB_SUBMITTED, SUB_ACCEPTED, SUB_REJECTED, SUB_RECLAIMED = range(5)


@pytest.fixture(scope="function", autouse=True)
def isolate(fn_isolation):
    # snapshot after the module fixtures, revert before every test
    pass


# ---------------------------------------------------------------------------------------------
# accounts and contracts
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def deployer(accounts):
    return accounts[0]


@pytest.fixture(scope="module")
def owner(accounts):
    return accounts[1]


@pytest.fixture(scope="module")
def owner2(accounts):
    return accounts[2]


@pytest.fixture(scope="module")
def miner(accounts):
    return accounts[3]


@pytest.fixture(scope="module")
def miner2(accounts):
    return accounts[4]


@pytest.fixture(scope="module")
def miner3(accounts):
    return accounts[5]


@pytest.fixture(scope="module")
def stranger(accounts):
    return accounts[6]


@pytest.fixture(scope="module")
def sonar(Sonar, deployer):
    return Sonar.deploy({"from": deployer})


@pytest.fixture(scope="module")
def token(TestToken, sonar, deployer, accounts):
    """A plain ERC-20; every account holds 1000 tokens and has approved Sonar for all of it."""
    t = TestToken.deploy({"from": deployer})
    for acct in accounts[:10]:
        t.mint(acct, 1000 * REWARD, {"from": deployer})
        t.approve(sonar, 2**256 - 1, {"from": acct})
    return t


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


class _Errors:
    """`E.SonarUnknownBounty(7)` -> "SonarUnknownBounty: 7", the string brownie 1.22 gives a
    custom-error revert (brownie.exceptions.decode_typed_error: name, then the decoded arguments
    joined by ", "; addresses as lower-case hex strings, enums as ints, strings as is)."""

    def __getattr__(self, name):
        if not name.startswith("Sonar"):
            raise AttributeError(name)

        def fmt(*args):
            return f"{name}: {', '.join(str(_fmt_arg(a)) for a in args)}"

        return fmt


def _fmt_arg(a):
    # brownie prints decoded addresses in lower case
    a = getattr(a, "address", a)  # Account / Contract
    if isinstance(a, str) and a.startswith("0x") and len(a) == 42:
        return a.lower()
    return a


@pytest.fixture(scope="session")
def E():
    return _Errors()


def now():
    """Mine a block and return its timestamp: the chain's "now", which the next transaction's block
    will (at least) have. Not `chain.time()`: after a snapshot revert brownie's clock and the
    node's can disagree by seconds, and the latest block may be older than the node's clock."""
    chain.mine()
    return chain[-1].timestamp


@pytest.fixture(scope="session", name="now")
def now_fixture():
    return now


@pytest.fixture(scope="session")
def sleep():
    """sleep(n): move the node's clock n seconds forward and mine a block."""

    def _sleep(seconds):
        chain.sleep(seconds)
        chain.mine()

    return _sleep


def make_params(
    token=ZERO_ADDRESS,
    reward=REWARD,
    stake=STAKE,
    deadline=None,
    eval_window=WINDOW,
    initial=800_000,
    target=900_000,
    higher=True,
    validation=VALIDATION,
    model_digest=MODEL_DIGEST,
    model_codec=0x70,
    auditable=False,
):
    if deadline is None:
        deadline = now() + DURATION
    token = getattr(token, "address", token)
    return (
        token,
        reward,
        stake,
        deadline,
        eval_window,
        initial,
        target,
        higher,
        validation,
        model_digest,
        model_codec,
        auditable,
    )


@pytest.fixture(scope="session")
def params():
    return make_params


@pytest.fixture(scope="module")
def post(sonar):
    """post(sender, **BountyParams overrides) -> bountyId; pays the reward in ETH (msg.value) or,
    for `token=<ERC-20>`, through the module-wide approval."""

    def _post(sender, **kw):
        p = make_params(**kw)
        value = p[1] if p[0] == ZERO_ADDRESS else 0
        tx = sonar.postBounty(p, {"from": sender, "value": value})
        return tx.events["BountyPosted"]["bountyId"]

    return _post


def digest_for(n):
    return (0xD16E57 * 2**32 + n).to_bytes(32, "big")


class Update:
    """A submitted update: its index in the queue, miner, CID and the submit receipt."""

    def __init__(self, bounty, index, miner, digest, codec, base, tx):
        self.bounty, self.index, self.miner = bounty, index, miner
        self.digest, self.codec, self.base, self.tx = digest, codec, base, tx


@pytest.fixture(scope="module")
def submit(sonar):
    """submit(bountyId, miner, n=<unique int>, base=0, codec=0x55) -> Update: one `submit` with the
    bounty's stake (ETH as msg.value; ERC-20 via the module-wide approval)."""
    counter = {"n": 0}

    def _submit(bounty, miner, n=None, base=0, codec=0x55):
        if n is None:
            counter["n"] += 1
            n = counter["n"]
        b = sonar.getBounty(bounty)
        value = b["stake"] if b["token"] == ZERO_ADDRESS else 0
        digest = digest_for(n)
        tx = sonar.submit(bounty, digest, codec, base, {"from": miner, "value": value})
        return Update(bounty, tx.events["UpdateSubmitted"]["index"], miner, digest, codec, base, tx)

    return _submit


def accept(share_bps=10_000):
    """ISonar.Verdict of an accepted update with `share_bps` of the round's pot (reward and stake vest)."""
    return (share_bps, 0, False, False)


def reject(reason=4):
    """ISonar.Verdict of a harmful update: stake forfeited."""
    return (0, reason, False, False)


def refund(reason=2):
    """ISonar.Verdict of an honest update that did not help: stake returned (credited at once)."""
    return (0, reason, True, False)


def clawback(reason=9):
    """ISonar.Verdict of a harmful update whose miner also loses its vesting rewards in the bounty:
    stake forfeited, vesting rewards moved to the forfeit pool."""
    return (0, reason, False, True)


def vest_out(sonar, bounty, *miners, sender=None):
    """Wait until `bounty`'s vesting has ended (past getVesting's `releasableAfter`), then release
    each miner's vesting (from `sender`, default the miner itself). Returns the release receipts."""
    until = sonar.getVesting(bounty, ZERO_ADDRESS)[2]
    t = now()
    if until >= t:
        chain.sleep(until - t + 1)
        chain.mine()
    return [sonar.release(bounty, m, {"from": sender or m}) for m in miners]


@pytest.fixture(scope="module")
def vested(sonar):
    """vested(bountyId, *miners, sender=None) -> receipts: `vest_out` on the module's Sonar."""

    def _vested(bounty, *miners, sender=None):
        return vest_out(sonar, bounty, *miners, sender=sender)

    return _vested


def round_reward(reward, escrow, best, score, initial, target, higher):
    """Python model of Sonar._rewardFor: (round reward, reached)."""
    if higher:
        assert score > best
        improvement, span, reached = score - best, target - initial, score >= target
    else:
        assert score < best
        improvement, span, reached = best - score, initial - target, score <= target
    if reached:
        return escrow, True
    return min(reward * improvement // span, escrow), False


def round_model(verdicts, *, reward, escrow, pool, stake, best, score, initial, target, higher, clawed=0):
    """Python model of Sonar.settle's arithmetic. Returns a dict: per-verdict `credits` (what each
    item's miner is credited at once: a refunded stake), `vesting` (what vests for it: reward and
    stake of an accepted update), `rewards` (rewards only), `paid` (the round's rewards), the new
    `escrow` and `pool`, `burned` (what the round burns) and `reached`. `clawed`: the vesting rewards
    the round's clawbacks take (burned at once, never in the pool)."""
    accepted = [v for v in verdicts if v[0] > 0]
    pool += stake * sum(1 for v in verdicts if v[0] == 0 and not v[2])
    reached = False
    pot = cap = 0
    if accepted:
        r, reached = round_reward(reward, escrow, best, score, initial, target, higher)
        pot = r + pool
        cap = 2**256 if reached and len(accepted) == 1 else reward * 3500 // 10_000
    rewards, credits, vesting = [], [], []
    for v in verdicts:
        if v[0] > 0:
            amount = min(pot * v[0] // 10_000, cap)
            rewards.append(amount)
            credits.append(0)
            vesting.append((amount, stake))
        else:
            rewards.append(0)
            credits.append(stake if v[2] else 0)
            vesting.append((0, 0))
    paid = sum(rewards)
    from_pool = min(paid, pool)
    return {
        "credits": credits,
        "vesting": vesting,
        "rewards": rewards,
        "paid": paid,
        "escrow": escrow - (paid - from_pool),
        "pool": pool - from_pool,
        "burned": clawed,
        "reached": reached,
    }


@pytest.fixture(scope="session")
def model():
    return round_model


def set_balance(address, wei):
    """Give `address` `wei` ETH on the dev node (anvil or ganache 7)."""
    from brownie import web3

    method = "evm_setAccountBalance" if "ganache" in web3.client_version.lower() else "anvil_setBalance"
    result = web3.provider.make_request(method, [str(address), hex(wei)])
    assert "error" not in result, result


@pytest.fixture(scope="session")
def impersonate(accounts):
    """impersonate(address) -> an account that sends transactions from `address` (even a
    contract's), funded with 10 ETH for gas."""

    def _impersonate(address):
        set_balance(address, 10 * REWARD)
        return accounts.at(address, force=True)

    return _impersonate


def _pure_python_state_machine():
    """brownie's `state_machine`, loaded from the pure-Python source of brownie.test.stateful.

    The mypyc-compiled module that eth-brownie 1.22.2 ships (compiled since brownie PR #1952)
    cannot run any state machine: `_BrownieStateMachine` is a compiled @final class, so every
    generated subclass fails in `execute_step` with "TypeError: brownie.test.stateful.
    _BrownieStateMachine object expected; got ...BrownieStateMachine". The .py file next to it
    is the same code, interpreted; hypothesis and the brownie profile settings are unchanged.
    """
    import importlib.util
    from pathlib import Path

    import brownie.test

    path = Path(brownie.test.__file__).with_name("stateful.py")
    spec = importlib.util.spec_from_file_location("_brownie_stateful_py", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.state_machine


@pytest.fixture
def state_machine():
    """Overrides brownie's fixture of the same name (see `_pure_python_state_machine`)."""
    yield _pure_python_state_machine()


def fast_call(method, *args):
    """`contract.method(*args)` as a bare eth_call: ~1 ms instead of the ~9 ms web3's middleware
    stack takes per call (the stateful test reads the whole state after every step)."""
    from brownie import web3

    data = method.encode_input(*args)
    reply = web3.provider.make_request("eth_call", [{"to": method._address, "data": data}, "latest"])
    if "error" in reply:
        raise ValueError(reply["error"])
    return method.decode_output(reply["result"])


def fast_balance(address):
    from brownie import web3

    return int(web3.provider.make_request("eth_getBalance", [str(address), "latest"])["result"], 16)


def pytest_configure(config):
    # brownie 1.22 warns about its own internal rpc.snapshot/rpc.revert/rpc.sleep calls on every
    # snapshot, revert and sleep: a thousand lines of noise per run
    config.addinivalue_line("filterwarnings", r"ignore:rpc\.\w+ should not be called directly:FutureWarning")
