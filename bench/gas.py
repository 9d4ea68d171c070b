"""Gas per Sonar transaction, from receipts on an anvil this module starts (or is given).

* one of everything: post a bounty (ETH, ERC-20), submit (ETH, ERC-20 stake), settle (one update
  accepted / refunded / forfeited / forfeited with clawback of its miner's vesting rewards, and
  rounds of 1, 8 and 32 accepted updates, per update), revealAudit, skip, reclaimStake, release (a
  miner's vesting to its credits), withdraw, close — sent through :class:`mine.chain.SonarClient`
  (the client's own code path). v1's commit + reveal (measured at commit f4f4ef9) is kept as the
  reference a single-transaction submit replaces;
* scale: submit and a one-update settle of the 1st and of the ``submissions``-th submission to one
  bounty while ``open_bounties`` bounties are open. The filler submissions in between are sent as
  ``eth_sendTransaction`` from anvil's unlocked dev accounts with explicit nonces and gas, with
  automine off and ``evm_mine`` batching, and settled (refunded) in rounds of 32;
* baseline: OpenMined's 2017 Sonar storage layout (``contracts/bench/Sonar2017.sol``):
  ``addGradient`` (its submission) and ``evalGradient`` (its evaluation, improved and paying).

All figures are ``gasUsed`` (21,000 intrinsic included). "exec" figures subtract the intrinsic cost
(21,000 + 4 per zero / 16 per non-zero calldata byte, shanghai rules), so that calldata differences
do not count as growth.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3 import Web3

from mine.chain import MAX_ROUND, ZERO_ADDRESS, BountyParams, SonarClient, Verdict, connect, load_artifact
from mine.contract import CODE_SIZE_LIMIT
from mine.devnet import anvil, dev_account

REWARD = 10**18
STAKE = 10**16
WINDOW = 86_400  # eval window: long enough for every filler submission to be settled in time
CODEC_UPDATE = 0x55  # raw
CODEC_MODEL = 0x70  # dag-pb
GOALS = {"submit": 60_000, "settle_per_update_32": 20_000, "withdraw": 45_000}
# v1 (commit–reveal) gas, measured with `make gas` at commit f4f4ef9 (the last v1 contract)
V1 = {"commit": 79_346, "reveal": 41_612, "accept": 99_749, "reject": 63_397}
ACCEPT, REFUND, FORFEIT = Verdict(share_bps=10_000), Verdict(reason=2, refund=True), Verdict(reason=4)
CLAWBACK = Verdict(reason=9, clawback=True)
BATCH = 150  # transactions per evm_mine (each sent with gas <= 200k: 150 fit a 30M block)

# dev account roles (anvil's test mnemonic)
DEPLOYER, OWNER, OWNER2, MINER, MINER2, FILLER, FIRST, LAST = 0, 1, 2, 3, 4, 7, 8, 9


def word(tag: str, n: int) -> bytes:
    """A 32-byte value without zero bytes (zero calldata bytes are cheaper: keeps rows comparable)."""
    return bytes(b or 1 for b in keccak(f"{tag}:{n}".encode()))


def intrinsic_gas(data: bytes) -> int:
    """21,000 plus calldata (shanghai: 4 per zero byte, 16 per non-zero byte)."""
    zeros = data.count(0)
    return 21_000 + 4 * zeros + 16 * (len(data) - zeros)


def send(w3: Web3, account: LocalAccount, call: Any = None, *, value: int = 0, to: str | None = None,
         gas: int | None = None) -> dict[str, Any]:
    """Build, sign locally, send and wait for one transaction; raise if it reverted."""
    tx: dict[str, Any] = {"from": account.address, "value": value,
                          "nonce": w3.eth.get_transaction_count(account.address, "pending"),
                          "gasPrice": w3.eth.gas_price, "chainId": w3.eth.chain_id}
    if call is not None:
        tx = call.build_transaction(tx)
    else:
        tx.update({"to": to, "gas": gas or 21_000})
    signed = account.sign_transaction(tx)
    receipt = w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(signed.raw_transaction),
                                                  timeout=60, poll_latency=0.01)
    if receipt["status"] != 1:
        raise RuntimeError(f"transaction {receipt['transactionHash'].hex()} reverted")
    return dict(receipt)


def deploy(w3: Web3, account: LocalAccount, name: str) -> Any:
    """Deploy a contract from build/contracts/<name>.json; return the web3 contract."""
    artifact = load_artifact(name)
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    receipt = send(w3, account, factory.constructor())
    return w3.eth.contract(address=receipt["contractAddress"], abi=artifact["abi"])


def gas_used(receipt: dict[str, Any]) -> int:
    return int(receipt["gasUsed"])


def exec_gas(w3: Web3, receipt: dict[str, Any]) -> int:
    """Gas used minus the intrinsic cost of the transaction's calldata."""
    tx = w3.eth.get_transaction(receipt["transactionHash"])
    return gas_used(receipt) - intrinsic_gas(bytes(tx["input"]))


# --------------------------------------------------------------------------- bulk sending


class Batch:
    """Transactions from anvil's unlocked dev accounts: explicit nonces and gas, automine off,
    mined ``BATCH`` at a time with ``evm_mine``; :meth:`flush` checks every receipt's status."""

    def __init__(self, w3: Web3) -> None:
        self.w3 = w3
        self.nonces: dict[str, int] = {}
        self.gas_price = hex(w3.eth.gas_price)
        self.unmined = 0
        self.first_block = w3.eth.block_number + 1
        self.sent = 0

    def _rpc(self, method: str, params: list[Any]) -> Any:
        reply = self.w3.provider.make_request(method, params)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def send(self, sender: str, to: str, data: str, *, value: int = 0, gas: int = 200_000) -> None:
        nonce = self.nonces.get(sender)
        if nonce is None:
            nonce = self.w3.eth.get_transaction_count(sender, "pending")
        tx = {"from": sender, "to": to, "data": data, "value": hex(value), "gas": hex(gas),
              "gasPrice": self.gas_price, "nonce": hex(nonce)}
        self._rpc("eth_sendTransaction", [tx])
        self.nonces[sender] = nonce + 1
        self.sent += 1
        self.unmined += 1
        if self.unmined >= BATCH:
            self._mine()

    def _mine(self) -> None:
        while int(self._rpc("txpool_status", [])["pending"], 16) > 0:
            self._rpc("evm_mine", [])
        self.unmined = 0

    def flush(self) -> int:
        """Mine what is pending; return the number of transactions mined since the batch began
        (raises if any reverted)."""
        self._mine()
        mined = 0
        for number in range(self.first_block, self.w3.eth.block_number + 1):
            receipts = self._rpc("eth_getBlockReceipts", [hex(number)])
            failed = [r["transactionHash"] for r in receipts if int(r["status"], 16) != 1]
            if failed:
                raise RuntimeError(f"{len(failed)} batched transaction(s) reverted, e.g. {failed[0]}")
            mined += len(receipts)
        self.first_block = self.w3.eth.block_number + 1
        return mined


@contextlib.contextmanager
def manual_mining(w3: Web3) -> Iterator[Batch]:
    """Automine off for the block (and back on afterwards, also on errors)."""
    w3.provider.make_request("evm_setAutomine", [False])
    try:
        yield Batch(w3)
    finally:
        w3.provider.make_request("evm_setAutomine", [True])


def warp(w3: Web3, seconds: int) -> None:
    w3.provider.make_request("evm_increaseTime", [seconds])
    w3.provider.make_request("evm_mine", [])


# --------------------------------------------------------------------------- the measurements


def _params(client: SonarClient, *, token: str = ZERO_ADDRESS, deadline: int | None = None, n: int = 0,
            auditable: bool = False) -> BountyParams:
    if deadline is None:
        deadline = client.now() + 30 * 86_400
    return BountyParams(token=token, reward=REWARD, stake=STAKE, deadline=deadline, eval_window=WINDOW,
                        initial_score=800_000, target_score=999_000, higher_is_better=True,
                        validation_commitment=word("val", n), model_digest=word("model", n), model_codec=CODEC_MODEL,
                        auditable=auditable)


def _shares(k: int) -> list[Verdict]:
    return [Verdict(share_bps=10_000 // k + (10_000 % k if i == 0 else 0)) for i in range(k)]


class _Scores:
    """Strictly improving scores for successive accepted rounds of one bounty."""

    def __init__(self) -> None:
        self.score = 800_000

    def next(self) -> int:
        self.score += 500
        return self.score


def _submit(client: SonarClient, bounty_id: int, n: int, *, stake: int = STAKE, token: str = ZERO_ADDRESS,
            base: int = 0) -> tuple[dict[str, Any], int]:
    """One submission through the client; returns (receipt, index)."""
    index, receipt = client.submit(bounty_id, word("digest", n), CODEC_UPDATE, base, stake=stake, token=token)
    return receipt, index


def measure(w3: Web3, *, submissions: int = 1000, open_bounties: int = 100) -> dict[str, Any]:
    """All gas figures on the chain behind ``w3`` (which must have anvil's dev accounts 0..9)."""
    if submissions < 3 or open_bounties < 5:
        raise ValueError("need at least 3 submissions and 5 open bounties")
    started = time.perf_counter()
    acct = {i: dev_account(i) for i in (DEPLOYER, OWNER, OWNER2, MINER, MINER2, FIRST, LAST)}
    sonar = SonarClient.deploy(w3, acct[DEPLOYER])
    token = deploy(w3, acct[DEPLOYER], "TestToken")
    old = deploy(w3, acct[DEPLOYER], "Sonar2017")
    owner, owner2 = sonar.with_account(acct[OWNER]), sonar.with_account(acct[OWNER2])
    miner, miner2 = sonar.with_account(acct[MINER]), sonar.with_account(acct[MINER2])
    for i in (OWNER2, MINER):
        send(w3, acct[DEPLOYER], token.functions.mint(acct[i].address, 100 * REWARD))
        send(w3, acct[i], token.functions.approve(sonar.address, 2**256 - 1))
    g: dict[str, Any] = {"code_size": len(w3.eth.get_code(sonar.address))}  # runtime bytes, as brownie compiles it
    scores = _Scores()

    # -- one of everything ----------------------------------------------------------------------
    owner.post_bounty(_params(owner, n=0))  # the very first bounty pays for the counter: warm-up
    g["post_eth"] = gas_used(owner.post_bounty(_params(owner, n=1))[1])
    token_bounty, receipt = owner2.post_bounty(_params(owner2, token=token.address, n=2))
    g["post_erc20"] = gas_used(receipt)
    bid, _ = owner.post_bounty(_params(owner, deadline=owner.now() + 3600, n=3, auditable=True))
    g["submit"] = gas_used(_submit(miner, bid, 1)[0])
    g["v1_commit_reveal"] = V1["commit"] + V1["reveal"]
    g["submit_vs_v1"] = round(g["submit"] / g["v1_commit_reveal"], 3)
    g["submit_erc20"] = gas_used(_submit(miner, token_bounty, 2, token=token.address)[0])
    g["settle_accept"] = gas_used(owner.settle(bid, [ACCEPT], scores.next(), word("v", 1), CODEC_MODEL))
    _submit(miner2, bid, 3)
    g["settle_refund"] = gas_used(owner.settle(bid, [REFUND]))
    _submit(miner2, bid, 4)
    g["settle_forfeit"] = gas_used(owner.settle(bid, [FORFEIT]))
    # rounds of k accepted updates from miners who already have something vesting (the steady state):
    # `miner` since settle_accept, `miner2` from this unmeasured round on
    _submit(miner2, bid, 99)
    owner.settle(bid, [ACCEPT], scores.next(), word("v", 99), CODEC_MODEL)
    for k in (1, 8, MAX_ROUND):
        for j in range(k):
            _submit(miner if j % 2 else miner2, bid, 100 * k + j)
        used = gas_used(owner.settle(bid, _shares(k), scores.next(), word("v", k), CODEC_MODEL))
        g[f"settle_round_{k}"] = used
        g[f"settle_per_update_{k}"] = used // k
    for verdict, name in ((REFUND, "refund"), (FORFEIT, "forfeit")):
        for j in range(MAX_ROUND):
            _submit(miner, bid, 5000 + 100 * len(name) + j)
        g[f"settle_per_update_{MAX_ROUND}_{name}"] = gas_used(owner.settle(bid, [verdict] * MAX_ROUND)) // MAX_ROUND
    # a forfeit whose clawback takes the rewards `miner` has vesting in the bounty (accepted above)
    _submit(miner, bid, 6000)
    receipt = owner.settle(bid, [CLAWBACK])
    (clawed,) = owner.receipt_events(receipt, "RewardsClawedBack")
    if clawed["args"]["amount"] == 0:
        raise RuntimeError("settle_forfeit_clawback clawed nothing back")
    g["settle_forfeit_clawback"] = gas_used(receipt)
    # a plain withdraw of an existing credit: the 32 stakes refunded above (accepted pay vests)
    g["withdraw"] = gas_used(miner.withdraw())
    owner2.settle(token_bounty, [ACCEPT], 999_000, word("v", 3), CODEC_MODEL)  # Completed: vesting ends
    # reward and stake of the Completed token bounty to `miner`'s (empty) token credit
    g["release"] = gas_used(miner.release(token_bounty))
    g["withdraw_erc20"] = gas_used(miner.withdraw(token.address))
    g["reveal_audit"] = gas_used(owner.reveal_audit(bid, word("val", 3), CODEC_UPDATE))
    _submit(miner2, bid, 7000)
    _submit(miner2, 2, 7001)  # bounty 2: ETH, a window of a day
    warp(w3, WINDOW + 1)
    g["skip"] = gas_used(miner.skip(bid))
    g["reclaim_stake"] = gas_used(miner2.reclaim_stake(2, 0))
    g["close"] = gas_used(owner.close(bid))

    # -- 1st vs n-th submission to one bounty, with `open_bounties` open ---------------------------
    filler = dev_account(FILLER).address
    posted = sonar.bounty_count()
    still_open = sum(1 for b in range(1, posted + 1) if sonar.bounty(b).status.name == "OPEN")
    with manual_mining(w3) as batch:
        for n in range(posted, posted + open_bounties - still_open):
            data = sonar.contract.encode_abi("postBounty", args=[_params(owner, n=n + 1).as_tuple()])
            batch.send(acct[OWNER].address, sonar.address, data, value=REWARD, gas=400_000)
        batch.flush()
    owner.reset_nonce()  # the batch sent from the owner's account behind the client's back
    target = (posted + 1 + sonar.bounty_count()) // 2  # a bounty in the middle, posted by `owner`
    assert sonar.bounty(target).owner == acct[OWNER].address
    first = sonar.with_account(acct[FIRST])
    last = sonar.with_account(acct[LAST])
    target_scores = _Scores()
    s, i = _submit(first, target, 10**6)
    a = owner.settle(target, [ACCEPT], target_scores.next(), word("v", 10**6), CODEC_MODEL)
    scale = {"1st": {"index": i, "submit": s, "settle": a}}

    fill_started = time.perf_counter()
    fillers = submissions - 2
    with manual_mining(w3) as batch:
        for n in range(fillers):
            data = sonar.contract.encode_abi("submit", args=[target, word("digest", 2 * 10**6 + n), CODEC_UPDATE, 0])
            batch.send(filler, sonar.address, data, value=STAKE)
        submitted = batch.flush()
        left, rounds = fillers, 0
        while left:
            k = min(left, MAX_ROUND)
            data = sonar.contract.encode_abi(
                "settle", args=[target, [REFUND.as_tuple()] * k, 0, word("v", 0), 0])
            batch.send(acct[OWNER].address, sonar.address, data, gas=1_000_000)
            left -= k
            rounds += 1
        settled = batch.flush()
    owner.reset_nonce()
    fill_seconds = time.perf_counter() - fill_started
    if submitted != fillers or settled != rounds:
        raise RuntimeError(f"filler transactions lost: {submitted} submits of {fillers}, {settled} settles of {rounds}")

    s, i = _submit(last, target, 3 * 10**6)
    a = owner.settle(target, [ACCEPT], target_scores.next(), word("v", 3 * 10**6), CODEC_MODEL)
    scale["nth"] = {"index": i, "submit": s, "settle": a}
    open_now = sum(1 for b in range(1, sonar.bounty_count() + 1) if sonar.bounty(b).status.name == "OPEN")
    if i != submissions - 1 or open_now < open_bounties:
        raise RuntimeError(f"scale setup wrong: index {i}, {open_now} bounties open")
    for step in ("submit", "settle"):
        g[f"{step}_1st"] = gas_used(scale["1st"][step])
        g[f"{step}_1000th"] = gas_used(scale["nth"][step])
        g[f"{step}_1st_exec"] = exec_gas(w3, scale["1st"][step])
        g[f"{step}_1000th_exec"] = exec_gas(w3, scale["nth"][step])

    # -- the 2017 baseline --------------------------------------------------------------------------
    f = old.functions
    send(w3, acct[OWNER], f.addModel([word("w", 0), word("w", 1)], 2_000_000, 1_000_000), value=REWARD)  # warm-up
    send(w3, acct[OWNER], f.addModel([word("w", 2), word("w", 3)], 2_000_000, 1_000_000), value=REWARD)
    send(w3, acct[MINER], f.addGradient(1, [word("g", 0), word("g", 1)]))  # warm-up: the first gradient
    g["sonar2017_submit"] = gas_used(send(w3, acct[MINER2], f.addGradient(1, [word("g", 2), word("g", 3)])))
    g["sonar2017_evaluate"] = gas_used(send(w3, acct[OWNER], f.evalGradient(1, [word("n", 0), word("n", 1)], 1_500_000)))
    g["sonar2017_evaluate_no_gain"] = gas_used(
        send(w3, acct[OWNER], f.evalGradient(0, [word("n", 2), word("n", 3)], 1_900_000)))

    g["submit_vs_2017"] = round(g["submit"] / g["sonar2017_submit"], 3)
    g["settle_vs_2017"] = round(g["settle_accept"] / g["sonar2017_evaluate"], 3)
    g["settle_per_update_32_vs_2017"] = round(g[f"settle_per_update_{MAX_ROUND}"] / g["sonar2017_evaluate"], 3)
    g["scale"] = {"submissions": submissions, "open_bounties": open_now, "nth_index": scale["nth"]["index"],
                  "filler_txs": fillers + rounds, "filler_seconds": round(fill_seconds, 2)}
    g["seconds"] = round(time.perf_counter() - started, 2)
    return g


def goals(g: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Goal checks: gas ceilings, and no growth of execution gas from the 1st to the n-th submission."""
    out = {f"gas_{k}": {"value": g[k], "goal": f"<= {v:,}", "met": g[k] <= v} for k, v in GOALS.items()}
    for key in ("submit", "settle"):
        growth = g[f"{key}_1000th_exec"] - g[f"{key}_1st_exec"]
        out[f"gas_{key}_growth"] = {"value": growth, "goal": "<= 0 (exec gas, nth - 1st)", "met": growth <= 0}
    if "code_size" in g:
        out["sonar_code_size"] = {"value": g["code_size"], "goal": f"<= {CODE_SIZE_LIMIT:,} bytes (EIP-170: deployable on mainnet)",
                                  "met": g["code_size"] <= CODE_SIZE_LIMIT}
    return out


def run(*, quick: bool = False, rpc_url: str | None = None) -> dict[str, Any]:
    """Measure on ``rpc_url`` (snapshot and revert around the run) or on an anvil started here."""
    sizes = {"submissions": 20, "open_bounties": 6} if quick else {"submissions": 1000, "open_bounties": 100}
    return on_chain(measure, rpc_url=rpc_url, accounts=30, **sizes)


def on_chain(measure: Any, *, rpc_url: str | None, accounts: int, **sizes: Any) -> dict[str, Any]:
    """``measure(w3, **sizes)`` on ``rpc_url`` (snapshot and revert around it) or on an anvil started here."""
    if rpc_url is not None:
        w3 = connect(rpc_url)
        snap = w3.provider.make_request("evm_snapshot", [])["result"]
        try:
            return measure(w3, **sizes)
        finally:
            w3.provider.make_request("evm_revert", [snap])
    with anvil(accounts=accounts) as url:
        return measure(connect(url), **sizes)
