"""What a mine sees of the market: bounties with fit, my submissions with outcome and reason, earnings.

The CLI (`mine bounties`, `mine status`, `mine withdraw`), the `mine watch` daemon and the `mine ui`
page all read the market through these functions, so the three never disagree. They read through a
`mine.views.ChainView`: the light `ChainReader` (the CLI's read-only commands) or the full
`mine.chain.SonarClient` (watch, ui). Nothing here imports torch or web3.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from mine.amounts import format_amount
from mine.contract import ZERO_ADDRESS, BountyStatus, SubmissionStatus, Vesting
from mine.errors import ChainError, ContentNotFoundError, StoreError, ValidationError
from mine.home import MineHome, read_json
from mine.store import Store, cid_from_chain

if TYPE_CHECKING:
    from mine.chain import SonarClient
    from mine.views import ChainView

#: What to do about a bounty whose model this mine's store does not have (``BountyRow.model_missing``).
MODEL_MISSING_HINT = (
    "a model 'not in your store' was published where this mine's store cannot see it: read from the owner's "
    "IPFS network (`mine init --store /ip4/HOST/tcp/5001`, a node connected to it) or a gateway "
    "(`mine init --gateway https://GATEWAY`); mines of one user on one machine can share a store (`--store shared`)"
)


@dataclass
class BountyRow:
    """One bounty as a data owner sees it (no validation data, nothing private)."""

    id: int
    status: str
    owner: str
    token: str
    symbol: str
    decimals: int
    escrow: int
    stake: int
    reward: int
    eval_window: int
    deadline_in: int
    auditable: str
    best: float
    target: float
    latest_version: int
    model: str  # name and latest version
    model_detail: str  # name, task, feature count
    model_missing: bool  # this mine's store does not have the model (see MODEL_MISSING_HINT)
    features: list[str] | None
    fits: list[str]
    owner_record: str
    owner_history: dict[str, int]  # closed, revealed (chain); audited, mismatches (this mine's audits)
    expected_reward: int

    def amount(self, units: int) -> str:
        return format_amount(units, self.decimals, self.symbol)


def _owner_history(home: MineHome, client: ChainView, bounties: list[Any]) -> dict[str, dict[str, int]]:
    history: dict[str, dict[str, int]] = {}
    for b in bounties:
        h = history.setdefault(b.owner, {"closed": 0, "revealed": 0, "audited": 0, "mismatches": 0})
        h["closed"] += b.status == BountyStatus.CLOSED
        h["revealed"] += bool(b.audit_revealed)
    audits = home.root / "audits"
    for path in sorted(audits.glob(f"{client.address}-*.json")) if audits.exists() else []:
        result = read_json(path, {})
        h = history.setdefault(result.get("owner", ""), {"closed": 0, "revealed": 0, "audited": 0, "mismatches": 0})
        h["audited"] += 1
        h["mismatches"] += len(result.get("mismatches", []))
    return history


def expected_reward(client: ChainView, bounty: Any, *, accepted_rewards: list[int] | None = None) -> int:
    """What one accepted submission may expect to earn on top of its stake, in the bounty's units.

    With accepted updates already paid on this bounty: their mean reward (what the owner's rounds
    actually pay). Before any: the most one update may get (MAX_SHARE_BPS of the reward), bounded by
    the escrow left. A guide for the miner's rules, not a promise.
    """
    from mine.contract import BPS, MAX_SHARE_BPS

    if accepted_rewards is None:
        accepted_rewards = [int(e["args"]["reward"]) for e in client.events("UpdateAccepted", bountyId=bounty.id)]
    cap = min(bounty.escrow + bounty.forfeit_pool, bounty.reward * MAX_SHARE_BPS // BPS)
    if accepted_rewards:
        return min(cap, sum(accepted_rewards) // len(accepted_rewards))
    return cap


def list_bounties(client: ChainView, store: Store, home: MineHome, *, show_all: bool = False) -> list[BountyRow]:
    """Bounties (open ones unless `show_all`) with model, fit to this mine's datasets and the owner's record."""
    from mine.scores import score_from_chain
    from mine.vault import Vault, fits
    from mine.versions import fetch_manifest, fetch_record

    datasets = Vault(home).list() if home.exists() else []
    now = client.now()
    everything = [client.bounty(bid) for bid in range(1, client.bounty_count() + 1)]
    history = _owner_history(home, client, everything)
    rows = []
    for b in everything:
        if b.status != BountyStatus.OPEN and not show_all:
            continue
        mv = client.model_version(b.id, b.latest_version)
        features: list[str] | None = None
        missing = False
        try:
            manifest = fetch_manifest(store, fetch_record(store, cid_from_chain(mv.digest, mv.codec)))
            features = list(manifest.features)
            model = f"{manifest.name} v{b.latest_version}"
            detail = f"{manifest.name} ({manifest.task}, {len(manifest.features)} features, v{b.latest_version})"
            fit = [d.name for d in datasets if fits(d, features) is None]
        except ContentNotFoundError:
            model, detail, fit, missing = "not in your store", "model not in your store", [], True
        except (StoreError, ValidationError) as exc:
            model, fit = f"unavailable ({type(exc).__name__})", []
            detail = model
        try:
            decimals, symbol = client.token_meta(b.token)
        except ChainError:
            decimals, symbol = 18, b.token[:10] + "?"
        h = history[b.owner]
        audited = f"{h['mismatches']} in {h['audited']} audits" if h["audited"] else "not audited"
        rows.append(BountyRow(
            id=b.id, status=b.status.name.lower(), owner=b.owner, token=b.token, symbol=symbol, decimals=decimals,
            escrow=b.escrow, stake=b.stake, reward=b.reward, eval_window=b.eval_window,
            deadline_in=max(0, b.deadline - now),
            auditable=("revealed" if b.audit_revealed else "yes") if b.auditable else "no",
            best=score_from_chain(b.best_score), target=score_from_chain(b.target_score),
            latest_version=b.latest_version, model=model, model_detail=detail, model_missing=missing,
            features=features, fits=fit,
            owner_record=f"{h['closed']} closed, {h['revealed']} revealed, {audited}", owner_history=dict(h),
            expected_reward=expected_reward(client, b),
        ))
    return rows


@dataclass
class SubmissionRow:
    """One of my submissions and why it earned what it earned."""

    bounty: int
    index: int | None
    cid: str
    state: str  # prepared / abandoned / submitted / accepted / rejected / reclaimed
    base_version: int
    stake: int = 0
    reward: int = 0  # vests with the returned stake until the bounty ends
    clawed_back: int = 0  # rejected with clawback: my vesting rewards in the bounty it took back
    share_bps: int = 0
    reason: str = ""
    stake_returned: bool | None = None  # None while pending
    score_before: float | None = None
    score_after: float | None = None
    settled_at: int | None = None  # block timestamp
    symbol: str = "ETH"
    decimals: int = 18
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def why(self) -> str:
        """One sentence: why this submission was paid what it was paid."""
        amt = lambda units: format_amount(units, self.decimals, self.symbol)  # noqa: E731
        scores = ""
        if self.score_before is not None and self.score_after is not None:
            scores = (f"; model score {self.score_before:.4f} → {self.score_after:.4f}"
                      if self.score_after != self.score_before else f"; model unchanged at {self.score_before:.4f}")
        if self.state == "accepted":
            return (f"accepted with {self.share_bps / 100:.2f}% of the round's pot: paid {amt(self.reward)} "
                    f"and the stake {amt(self.stake)} returned, both vesting until the bounty ends{scores}")
        if self.state == "rejected":
            back = "returned" if self.stake_returned else "forfeited"
            taken = f", and {amt(self.clawed_back)} of vesting rewards taken back" if self.clawed_back else ""
            return f"rejected: {self.reason}; stake {amt(self.stake)} {back}{taken}{scores}"
        if self.state == "reclaimed":
            return f"not judged within the evaluation window; stake {amt(self.stake)} reclaimed"
        if self.state == "submitted":
            return "waiting for the owner's next round"
        if self.state == "abandoned":
            return "never submitted (the bounty stopped taking updates); no stake paid"
        return "stored, not yet submitted (the journal finishes it)"


def _block_time(client: ChainView, block: int, cache: dict[int, int]) -> int:
    if block not in cache:
        cache[block] = client.block_time(block)
    return cache[block]


def my_submissions(client: ChainView, home: MineHome, miner: str | None = None) -> list[SubmissionRow]:
    """Every submission in this mine's journal for `miner` (default: the client's account), with outcome."""
    from mine.scores import score_from_chain
    from mine.miner import Journal
    from mine.reasons import REASONS

    account = getattr(client, "account", None)  # a ChainReader has none: pass `miner`
    me = miner or (account.address if account else "")
    outcome: dict[tuple[int, int], dict[str, Any]] = {}
    for log in client.events("UpdateRejected", miner=me):
        code = int(log["args"]["reason"])
        outcome[(log["args"]["bountyId"], log["args"]["index"])] = {
            "reason": f"[{code}] {REASONS.get(code, 'unknown')}", "stake_returned": bool(log["args"]["refunded"]),
            "block": log["blockNumber"], "tx": log["transactionHash"]}
    clawed = {(log["args"]["bountyId"], log["args"]["index"]): int(log["args"]["amount"])
              for log in client.events("RewardsClawedBack", miner=me)}
    for log in client.events("UpdateAccepted", miner=me):
        outcome[(log["args"]["bountyId"], log["args"]["index"])] = {
            "share_bps": int(log["args"]["shareBps"]), "reward": int(log["args"]["reward"]), "stake_returned": True,
            "block": log["blockNumber"], "tx": log["transactionHash"]}
    rounds: dict[Any, dict[str, Any]] = {}
    bounties: dict[int, Any] = {}
    times: dict[int, int] = {}
    rows = []
    for entry in Journal(home).entries():
        if entry.miner != me:
            continue
        b = bounties.get(entry.bounty) or bounties.setdefault(entry.bounty, client.bounty(entry.bounty))
        try:
            decimals, symbol = client.token_meta(b.token)
        except ChainError:
            decimals, symbol = 18, "?"
        row = SubmissionRow(entry.bounty, entry.index, entry.cid, entry.state, entry.base_version, b.stake,
                            symbol=symbol, decimals=decimals)
        if entry.index is not None:
            sub = client.submission(entry.bounty, entry.index)
            row.state = sub.status.name.lower()
            found = outcome.get((entry.bounty, entry.index))
            if found is not None:
                row.reward = found.get("reward", 0)
                row.share_bps = found.get("share_bps", 0)
                row.reason = found.get("reason", "")
                row.stake_returned = found["stake_returned"]
                row.clawed_back = clawed.get((entry.bounty, entry.index), 0)
                row.settled_at = _block_time(client, found["block"], times)
                tx = found["tx"]
                if tx not in rounds:
                    settled = client.tx_events(tx, "RoundSettled")
                    rounds[tx] = dict(settled[0]["args"]) if settled else {}
                rs = rounds[tx]
                if rs:
                    row.score_before = score_from_chain(client.model_version(entry.bounty, entry.base_version).score)
                    # a round that made no version leaves the model as it was
                    row.score_after = (score_from_chain(int(rs["score"])) if int(rs["version"])
                                       else row.score_before)
                    row.details = {"round_first": int(rs["firstIndex"]), "round_count": int(rs["count"]),
                                   "version": int(rs["version"])}
            elif sub.status == SubmissionStatus.RECLAIMED:
                row.stake_returned = True
        rows.append(row)
    return rows


def earnings(client: ChainView, miner: str) -> list[tuple[int, int]]:
    """(block timestamp, cumulative rewards earned in wei) after each accepted update of `miner`, and
    after each clawback of its vesting rewards (which lowers the total)."""
    times: dict[int, int] = {}
    points, total = [], 0
    logs = [(log, 1, "reward") for log in client.events("UpdateAccepted", miner=miner)]
    logs += [(log, -1, "amount") for log in client.events("RewardsClawedBack", miner=miner)]
    for log, sign, key in sorted(logs, key=lambda x: (x[0]["blockNumber"], x[0]["logIndex"])):
        total += sign * int(log["args"][key])
        points.append((_block_time(client, log["blockNumber"], times), total))
    return points


def accepted_bounties(client: ChainView, miner: str) -> set[int]:
    """Every bounty `miner` was ever accepted in (a scan of the events): where something may vest."""
    return {int(e["args"]["bountyId"]) for e in client.events("UpdateAccepted", miner=miner)}


def vesting(client: ChainView, miner: str, bounties: Iterable[int] | None = None) -> dict[int, Vesting]:
    """What `miner` has vesting, per bounty (empty ones left out). `bounties`: where to look; default
    :func:`accepted_bounties`."""
    if bounties is None:
        bounties = accepted_bounties(client, miner)
    found = {bid: client.vesting(bid, miner) for bid in sorted(bounties)}
    return {bid: v for bid, v in found.items() if v.total}


def releasable(client: ChainView, miner: str, token: str | None = None,
               bounties: Iterable[int] | None = None) -> dict[int, Vesting]:
    """The part of :func:`vesting` that `release` can move to credits now (in `token`, if given)."""
    now = client.now()
    ready = {bid: v for bid, v in vesting(client, miner, bounties).items() if v.releasable_after <= now}
    if token is not None:
        ready = {bid: v for bid, v in ready.items() if client.bounty(bid).token.lower() == token.lower()}
    return ready


def release_ended(client: SonarClient, token: str | None = None, bounties: Iterable[int] | None = None) -> int:
    """Release this account's vesting in every bounty that has ended (in `token`, if given); returns the amount.

    Safe to repeat after a crash: a release that was mined left nothing vesting behind.
    """
    if client.account is None:
        raise ChainError("releasing needs an account")
    total = 0
    for bid, v in releasable(client, client.account.address, token, bounties).items():
        client.release(bid)
        total += v.total
    return total


def withdrawn(client: ChainView, account: str) -> int:
    """Everything `account` has withdrawn (ETH), from the Withdrawn events."""
    return sum(int(e["args"]["amount"]) for e in client.events("Withdrawn", account=account, token=ZERO_ADDRESS))


def withdraw_credits(client: SonarClient, token: str = ZERO_ADDRESS, *, threshold: int = 0,
                     bounties: Iterable[int] | None = None) -> int:
    """Withdraw this account's credits in `token` if they reach `threshold` (and are > 0); returns the amount.

    Vesting of bounties that have ended is released first (:func:`release_ended`; `bounties` as there).

    Safe to repeat after a crash: a withdrawal that was mined left zero credits behind.
    """
    if client.account is None:
        raise ChainError("withdrawing needs an account")
    release_ended(client, token, bounties)
    amount = client.credits(client.account.address, token)
    if amount == 0 or amount < threshold:
        return 0
    client.withdraw(token)
    return amount
