"""`mine watch`: the data owner's daemon — discover bounties, decide, train, submit, follow, withdraw.

One pass (`Watcher.run_pass`) does a miner's whole job once, with the same library functions as the
CLI (`mine.miner.train_update` / `submit` / `resume_all`, `mine.overview`); `Watcher.run` repeats it
every `interval` seconds, doing nothing but one `eth_blockNumber` call while no new block arrived.

- Discovery: `BountyPosted` logs are read in bounded block ranges (`LOG_RANGE`), from the last block
  scanned (kept in `watch-state.json`), so a restart does not rescan the chain.
- Rules (config.json, key `watch`, amounts in whole tokens): `min_reward` (expected reward of one
  accepted update), `max_stake` and `min_eval_window` (the miner's own limits, shared with `mine
  submit`), `tokens` (accepted currencies: "ETH" or ERC-20 addresses), `allow_owners` / `block_owners`,
  `min_privacy_budget` (ε a dataset must have left, when the privacy ledger exists),
  `withdraw_threshold`, `stop_after` (K: stop when the last K settled rounds produced no version,
  or K of my updates in a row were rejected).
- One submission per bounty and model version, and never while one of mine waits in its queue.
- Crash safety comes from the miner's journal: a restart first finishes every prepared submission
  (found in `UpdateSubmitted` if it was mined) before anything new, so no second submit and no
  lost stake; an update whose window passed unjudged is reclaimed; a dead queue head in front of
  mine is skipped.
- One process per mine home (`watch.lock`, holding the pid); chain or store outages back off
  exponentially with one log line each.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from web3.exceptions import Web3Exception

from mine.amounts import format_amount, is_eth, parse_units, token_meta
from mine.chain import BountyStatus, SonarClient, SubmissionStatus
from mine.errors import (ChainError, ChainUnreachableError, ConfigError, ContentNotFoundError, MineError, StoreError,
                         ValidationError, VaultError)
from mine.home import MineHome, read_json, write_json_atomic
from mine.store import Store, cid_from_chain

LOG_RANGE = 2000  # most blocks one eth_getLogs call covers
#: Seconds before the model of a bounty that could not be fetched is looked for again (one bounty's
#: missing content must not stall the others, nor cost a store timeout on every pass).
MODEL_RETRY = 120.0
FULL_PASS_EVERY = 30.0  # seconds: a full pass (expiries, withdrawals) even when no event of ours arrived
LOG_FILE_MAX = 1 << 20  # watch.log is truncated to its newer half past this size
DEFAULT_RULES: dict[str, Any] = {
    "min_reward": "0", "tokens": ["ETH"], "allow_owners": [], "block_owners": [], "min_privacy_budget": 0.0,
    "withdraw_threshold": "0", "stop_after": 3, "epochs": None, "dp": True,
}


# ---------------------------------------------------------------------- lock, backoff, log


class LockedError(ConfigError):
    """Another process already holds this mine home's lock."""


@contextmanager
def home_lock(home: MineHome, name: str = "watch") -> Iterator[Path]:
    """Hold `<home>/<name>.lock` (with our pid in it) for the block; a clear error if another process has it.

    An OS lock (flock): a process killed with SIGKILL releases it, so a restart never finds a stale lock.
    """
    path = home.root / f"{name}.lock"
    home.root.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        other = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise LockedError(f"another `mine {name}` (pid {other}) is running on {home.root}; stop it first "
                          "(one per mine home)") from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def lock_holder(home: MineHome, name: str = "watch") -> int | None:
    """The pid of the process holding the home's lock, or None if nobody runs."""
    path = home.root / f"{name}.lock"
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        return int(text) if text.isdigit() else -1
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


@dataclass
class Backoff:
    """Exponential backoff between failed passes: initial, ×factor per failure, capped; reset on success."""

    initial: float = 1.0
    factor: float = 2.0
    maximum: float = 60.0
    failures: int = 0

    def next_delay(self) -> float:
        delay = min(self.maximum, self.initial * self.factor ** self.failures)
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0


class WatchLog:
    """One line per decision: human text or JSON to `stream`, and JSON lines to `<home>/<name>.log` for the page."""

    def __init__(self, home: MineHome, *, as_json: bool = False, stream: TextIO | None = None,
                 name: str = "watch") -> None:
        self.path = home.root / f"{name}.log"
        self.as_json = as_json
        self.stream = stream or sys.stdout

    def __call__(self, event: str, message: str, **fields: Any) -> None:
        record = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "event": event, "message": message,
                  **fields}
        line = json.dumps(record, default=str)
        self.stream.write((line if self.as_json else f"{record['time']} {message}") + "\n")
        self.stream.flush()
        try:
            if self.path.exists() and self.path.stat().st_size > LOG_FILE_MAX:
                lines = self.path.read_text().splitlines()
                self.path.write_text("\n".join(lines[len(lines) // 2:]) + "\n")
            with self.path.open("a") as f:
                f.write(line + "\n")
        except OSError:
            pass  # the log file is a convenience for the page; the stream has the line


def recent_log(home: MineHome, limit: int = 50, name: str = "watch") -> list[dict[str, Any]]:
    """The last `limit` records of `<home>/<name>.log`, newest first."""
    path = home.root / f"{name}.log"
    if not path.exists():
        return []
    out = []
    for line in path.read_text(errors="replace").splitlines()[-limit:]:
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out[::-1]


# ---------------------------------------------------------------------- rules and state


@dataclass
class Rules:
    """The data owner's rules for `mine watch` (config.json, key `watch`)."""

    min_reward: str = "0"
    tokens: list[str] = field(default_factory=lambda: ["ETH"])
    allow_owners: list[str] = field(default_factory=list)
    block_owners: list[str] = field(default_factory=list)
    min_privacy_budget: float = 0.0
    withdraw_threshold: str = "0"
    stop_after: int = 3
    epochs: int | None = None
    dp: bool = True  # train with DP-SGD (charged to the dataset's privacy ledger); false = plain training

    @classmethod
    def from_config(cls, extra: dict[str, Any]) -> Rules:
        raw = {**DEFAULT_RULES, **(extra.get("watch") or {})}
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"config.json `watch` has unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**raw)

    def accepts_token(self, token: str) -> bool:
        names = {t.lower() for t in self.tokens}
        return ("eth" in names) if is_eth(token) else token.lower() in names

    def owner_refusal(self, owner: str) -> str | None:
        if owner.lower() in {o.lower() for o in self.block_owners}:
            return f"owner {owner} is blocked"
        if self.allow_owners and owner.lower() not in {o.lower() for o in self.allow_owners}:
            return f"owner {owner} is not in allow_owners"
        return None


@dataclass
class BountyMemory:
    """What the daemon remembers of one bounty between passes (and restarts)."""

    rounds_without_version: int = 0
    mine_rejected_in_a_row: int = 0
    stopped: str = ""  # why we stopped submitting ("" = still submitting)


class WatchState:
    """`watch-state.json`: last block scanned, bounties known, per-bounty memory (rewritten atomically)."""

    def __init__(self, home: MineHome, sonar: str) -> None:
        self.path = home.root / "watch-state.json"
        data = read_json(self.path, {})
        if data.get("sonar") != sonar:
            data = {"sonar": sonar}  # another deployment: start over
        self.sonar = sonar
        self.last_block: int = int(data.get("last_block", -1))
        self.bounties: dict[int, BountyMemory] = {
            int(k): BountyMemory(**v) for k, v in data.get("bounties", {}).items()}
        self.last_pass: float = float(data.get("last_pass", 0))

    def save(self) -> None:
        write_json_atomic(self.path, {
            "sonar": self.sonar, "last_block": self.last_block, "last_pass": self.last_pass,
            "bounties": {str(k): vars(v) for k, v in sorted(self.bounties.items())}})


# ---------------------------------------------------------------------- the daemon


Log = Callable[..., None]


class Watcher:
    """The daemon for one mine home and account. `run_pass()` does one pass; `run()` loops with backoff."""

    def __init__(self, home: MineHome, client: SonarClient, store: Store, log: Log, *, seed: int | None = None) -> None:
        if client.account is None:
            raise ConfigError("`mine watch` submits and withdraws: it needs an account (mine account new, or --dev-account N)")
        self.home, self.client, self.store, self.log = home, client, store, log
        self.me = client.account.address
        self.rules = Rules.from_config(home.load_config().extra)
        self.state = WatchState(home, client.address)
        self.seed = seed if seed is not None else int(self.me, 16) % 1_000_003
        self._said: dict[str, str] = {}  # last decision logged per key (a decision is logged once)
        self._features: dict[int, list[str]] = {}
        self._unreachable: dict[int, float] = {}  # bounty -> when its model could not be fetched (monotonic)
        self.last_block_seen = -1
        self.passes = 0
        self._last_full = self._saved = -FULL_PASS_EVERY
        # bounties where something of mine may vest: one scan of the history at the first withdrawal,
        # then kept up from the followed events and pruned to what still vests, so a pass neither
        # rescans the chain nor reads every bounty I was ever paid in
        self._accepted_in: set[int] | None = None

    # ------------------------------------------------------------------ logging helpers

    def decide(self, key: str, event: str, message: str, **fields: Any) -> None:
        """Log a decision once (again only when it changes)."""
        if self._said.get(key) != message:
            self._said[key] = message
            self.log(event, message, **fields)

    def _amount(self, units: int, token: str) -> str:
        decimals, symbol = token_meta(self.client.w3, token)
        return format_amount(units, decimals, symbol)

    # ------------------------------------------------------------------ one pass

    def run_pass(self, *, force: bool = False) -> bool:
        """One pass over the market. Returns False (and does nothing else) when no new block arrived."""
        try:
            head = int(self.client.w3.eth.block_number)
        except (OSError, Web3Exception) as exc:
            raise ChainUnreachableError(f"the node does not answer ({type(exc).__name__})") from None
        if head == self.last_block_seen and not force:
            return False
        self.last_block_seen = head
        news = self._scan(head)
        if not news and not force and time.monotonic() - self._last_full < FULL_PASS_EVERY:
            return False  # an empty block: nothing of ours moved; expiries are checked every FULL_PASS_EVERY
        self._last_full = time.monotonic()
        self._resume()
        self._follow()
        for bounty_id in sorted(self.state.bounties):
            try:
                self._consider(bounty_id)
            except ContentNotFoundError as exc:  # this bounty's content is out of reach, not the store
                self._unreachable[bounty_id] = time.monotonic()
                self.decide(f"b{bounty_id}", "skip", f"bounty {bounty_id}: skipped for now, its model cannot be "
                            f"fetched ({exc}); looked for again every {MODEL_RETRY:.0f} s", bounty=bounty_id)
            except (ChainUnreachableError, StoreError):
                raise
            except (VaultError, ValidationError) as exc:  # e.g. the bounty's ε cap is below what I train at
                self.decide(f"b{bounty_id}", "skip", f"bounty {bounty_id}: skipped, {exc}", bounty=bounty_id)
            except ChainError as exc:
                self.log("error", f"bounty {bounty_id}: {exc}", bounty=bounty_id)
        self._withdraw()
        self.state.last_pass = time.time()
        self.state.save()
        self.passes += 1
        return True

    def _resume(self) -> None:
        from mine.miner import resume_all

        done, problems = resume_all(self.home, self.client, self.store)
        for entry in done:
            self.log("resumed", f"bounty {entry.bounty}: finished an interrupted submission as #{entry.index} ({entry.state})",
                     bounty=entry.bounty, index=entry.index)
        for problem in problems:
            self.log("error", f"could not finish {problem}")

    def _scan(self, head: int) -> int:
        """Read new events in bounded ranges: bounties posted, rounds settled, my outcomes. Returns how many."""
        start, found = self.state.last_block + 1, 0
        contract = self.client.contract
        while start <= head:
            end = min(head, start + LOG_RANGE - 1)
            try:
                logs = self.client.w3.eth.get_logs({"address": self.client.address, "fromBlock": start, "toBlock": end})
            except (OSError, ValueError) as exc:
                raise ChainUnreachableError(f"reading logs {start}..{end}: {exc}") from None
            for raw in logs:
                self._on_log(contract, raw)
            found += len(logs)
            self.state.last_block = end
            if logs or end == head and time.monotonic() - self._saved > FULL_PASS_EVERY:
                self.state.save()
                self._saved = time.monotonic()
            start = end + 1
        return found

    def _on_log(self, contract: Any, raw: Any) -> None:
        from web3.exceptions import MismatchedABI

        for name in ("BountyPosted", "RoundSettled", "UpdateAccepted", "UpdateRejected", "RewardsClawedBack"):
            try:
                event = getattr(contract.events, name)().process_log(raw)
            except MismatchedABI:
                continue
            args = event["args"]
            bid = int(args["bountyId"])
            if name == "BountyPosted":
                if bid not in self.state.bounties:
                    self.state.bounties[bid] = BountyMemory()
                    self.log("discovered", f"bounty {bid}: posted by {args['owner']}, reward "
                             f"{self._amount(args['reward'], args['token'])}", bounty=bid)
            memory = self.state.bounties.setdefault(bid, BountyMemory())
            if name == "RoundSettled":
                memory.rounds_without_version = 0 if int(args["version"]) else memory.rounds_without_version + 1
            elif args.get("miner") == self.me and name == "UpdateAccepted":
                memory.mine_rejected_in_a_row = 0
                if self._accepted_in is not None:
                    self._accepted_in.add(bid)
                self.log("accepted", f"bounty {bid} #{args['index']}: accepted, share {args['shareBps'] / 100:.2f}%, "
                         f"reward {self._amount(args['reward'], self.client.bounty(bid).token)} (+ stake back; both vest until "
                         "the bounty ends)",
                         bounty=bid, index=int(args["index"]), reward=int(args["reward"]))
            elif args.get("miner") == self.me and name == "UpdateRejected":
                from mine.reasons import REASONS

                memory.mine_rejected_in_a_row += 1
                code = int(args["reason"])
                self.log("rejected", f"bounty {bid} #{args['index']}: rejected [{code}] {REASONS.get(code, '?')}; "
                         f"stake {'returned' if args['refunded'] else 'forfeited'}",
                         bounty=bid, index=int(args["index"]), reason=code, refunded=bool(args["refunded"]))
            elif args.get("miner") == self.me and name == "RewardsClawedBack":
                self.log("clawed back", f"bounty {bid} #{args['index']}: the owner's verdict took back "
                         f"{self._amount(args['amount'], self.client.bounty(bid).token)} of vesting rewards",
                         bounty=bid, index=int(args["index"]), amount=int(args["amount"]))
            return

    def _follow(self) -> None:
        """Reclaim my expired stakes; skip a dead queue head in front of a pending update of mine."""
        from mine.miner import Journal

        now = self.client.now()
        skipped: set[int] = set()
        for entry in Journal(self.home).entries():
            if entry.miner != self.me or entry.state != "submitted" or entry.index is None:
                continue
            sub = self.client.submission(entry.bounty, entry.index)
            if sub.status != SubmissionStatus.SUBMITTED:
                continue
            bounty = self.client.bounty(entry.bounty)
            if now > sub.submitted_at + bounty.eval_window:
                self.client.reclaim_stake(entry.bounty, entry.index)
                self.log("reclaimed", f"bounty {entry.bounty} #{entry.index}: not judged within its window; stake "
                         f"{self._amount(bounty.stake, bounty.token)} reclaimed", bounty=entry.bounty, index=entry.index)
                continue
            if entry.bounty in skipped or bounty.next_eval >= entry.index:
                continue
            head = self.client.submission(entry.bounty, bounty.next_eval)
            dead = head.status == SubmissionStatus.RECLAIMED or (
                head.status == SubmissionStatus.SUBMITTED and now > head.submitted_at + bounty.eval_window)
            if dead:
                self.client.skip(entry.bounty)
                skipped.add(entry.bounty)
                self.log("skipped-head", f"bounty {entry.bounty}: skipped the dead queue head #{bounty.next_eval} "
                         f"in front of my #{entry.index}", bounty=entry.bounty)

    def _features_of(self, bounty_id: int, latest_version: int) -> list[str]:
        if bounty_id not in self._features:
            from mine.versions import fetch_manifest, fetch_record

            mv = self.client.model_version(bounty_id, latest_version)
            manifest = fetch_manifest(self.store, fetch_record(self.store, cid_from_chain(mv.digest, mv.codec)))
            self._features[bounty_id] = list(manifest.features)
        return self._features[bounty_id]

    def _consider(self, bounty_id: int) -> None:
        """Decide on one bounty; train and submit if it passes every rule."""
        from mine.miner import DEFAULT_MAX_STAKE, DEFAULT_MIN_EVAL_WINDOW, Journal
        from mine.overview import expected_reward
        from mine.vault import Vault, fits

        key = f"b{bounty_id}"
        memory = self.state.bounties[bounty_id]
        b = self.client.bounty(bounty_id)
        say = lambda why: self.decide(key, "skip", f"bounty {bounty_id}: skipped, {why}", bounty=bounty_id)  # noqa: E731
        if b.status != BountyStatus.OPEN:
            return say(f"it is {b.status.name.lower()}")
        if self.client.now() >= b.deadline:
            return say("its deadline has passed")
        if memory.stopped:
            return say(memory.stopped)
        k = max(1, int(self.rules.stop_after))
        if memory.rounds_without_version >= k or memory.mine_rejected_in_a_row >= k:
            memory.stopped = (f"stopped submitting: its last {memory.rounds_without_version} round(s) made no new version"
                              if memory.rounds_without_version >= k else
                              f"stopped submitting: my last {memory.mine_rejected_in_a_row} update(s) were rejected")
            return say(memory.stopped)
        if not self.rules.accepts_token(b.token):
            return say(f"token {b.token} is not in the accepted tokens {self.rules.tokens}")
        refusal = self.rules.owner_refusal(b.owner)
        if refusal:
            return say(refusal)
        extra = self.home.load_config().extra
        min_window = int(extra.get("min_eval_window", DEFAULT_MIN_EVAL_WINDOW))
        if b.eval_window < min_window:
            return say(f"evaluation window {b.eval_window} s < min {min_window} s")
        decimals, symbol = token_meta(self.client.w3, b.token)
        max_stake = parse_units(str(extra.get("max_stake", DEFAULT_MAX_STAKE)), decimals)
        if b.stake > max_stake:
            return say(f"stake {format_amount(b.stake, decimals, symbol)} > max {format_amount(max_stake, decimals, symbol)}")
        expected = expected_reward(self.client, b)
        min_reward = parse_units(self.rules.min_reward, decimals)
        if expected < min_reward:
            return say(f"reward {format_amount(expected, decimals, symbol)} < min {format_amount(min_reward, decimals, symbol)}")
        if time.monotonic() - self._unreachable.get(bounty_id, -MODEL_RETRY) < MODEL_RETRY:
            return None  # its model was out of reach a moment ago (logged then)
        features = self._features_of(bounty_id, b.latest_version)
        datasets = [d for d in Vault(self.home).list() if fits(d, features) is None]
        if not datasets:
            return say(f"no dataset in the vault fits its {len(features)} features")
        dataset = self._with_budget(datasets)
        if dataset is None:
            return say(f"no fitting dataset has {self.rules.min_privacy_budget} ε of privacy budget left")
        mine = [e for e in Journal(self.home).entries() if e.bounty == bounty_id and e.miner == self.me]
        for e in mine:
            if e.state == "prepared":
                return self.decide(key, "wait", f"bounty {bounty_id}: waiting, an interrupted submission is not finished",
                                   bounty=bounty_id)
            if e.state == "submitted" and e.index is not None and \
                    self.client.submission(bounty_id, e.index).status == SubmissionStatus.SUBMITTED:
                return self.decide(key, "wait", f"bounty {bounty_id}: waiting, my #{e.index} is in the queue",
                                   bounty=bounty_id)
        if any(e.base_version == b.latest_version and e.state != "abandoned" for e in mine):
            return self.decide(key, "wait", f"bounty {bounty_id}: waiting for a new model version (v{b.latest_version} done)",
                               bounty=bounty_id)
        self._train_and_submit(b, dataset, expected, symbol, decimals)

    def _with_budget(self, datasets: list[Any]) -> str | None:
        """The dataset to train on: the largest fitting one with privacy budget left in the ledger."""
        from mine.ledger import PrivacyLedger

        ledger = PrivacyLedger(self.home)
        for d in sorted(datasets, key=lambda d: -d.rows):
            status = ledger.status(d.name, rows=d.rows)
            if status.remaining > max(0.0, float(self.rules.min_privacy_budget)):
                return str(d.name)
        return None

    def _train_and_submit(self, b: Any, dataset: str, expected: int, symbol: str, decimals: int) -> None:
        from mine.miner import submit, train_update
        from mine.vault import Vault

        self.log("train", f"bounty {b.id}: training v{b.latest_version} on {dataset} (expected reward up to "
                 f"{format_amount(expected, decimals, symbol)}, stake {format_amount(b.stake, decimals, symbol)})",
                 bounty=b.id, dataset=dataset, version=b.latest_version)
        X, y, columns = Vault(self.home).load(dataset)
        started = time.perf_counter()
        update = train_update(self.home, self.client, self.store, b.id, X, y, columns, epochs=self.rules.epochs,
                              seed=self.seed + b.latest_version, no_dp=not self.rules.dp, dataset=dataset)
        trained = time.perf_counter() - started
        entry = submit(self.home, self.client, self.store, b.id, update.path)
        self._said.pop(f"b{b.id}", None)
        self.log("submitted", f"bounty {b.id}: submitted #{entry.index} from v{update.base_version} "
                 f"({update.examples} examples, {trained:.1f} s training), stake "
                 f"{format_amount(b.stake, decimals, symbol)}", bounty=b.id, index=entry.index, cid=entry.cid,
                 train_seconds=round(trained, 3))

    def _withdraw(self) -> None:
        from mine.overview import accepted_bounties, vesting, withdraw_credits

        if self._accepted_in is None:
            self._accepted_in = accepted_bounties(self.client, self.me)
        found = vesting(self.client, self.me, self._accepted_in)
        # a bounty with nothing vesting drops out until I am accepted in it again (`_on_log` adds it)
        self._accepted_in = set(found)
        now = self.client.now()
        ended = {bid for bid, v in found.items() if v.releasable_after <= now}  # only these are read again
        tokens = {"0x0000000000000000000000000000000000000000"} | {t for t in self.rules.tokens if t.lower() != "eth"}
        for token in sorted(tokens):
            decimals, _ = token_meta(self.client.w3, token)
            threshold = max(1, parse_units(self.rules.withdraw_threshold, decimals))
            amount = withdraw_credits(self.client, token, threshold=threshold, bounties=ended)
            if amount:
                self.log("withdrew", f"withdrew {self._amount(amount, token)}", amount=amount, token=token)

    # ------------------------------------------------------------------ the loop

    def run(self, *, interval: float = 2.0, once: bool = False, stop: Callable[[], bool] = lambda: False,
            backoff: Backoff | None = None) -> None:
        """Pass after pass until `stop()`; outages back off exponentially (a log line each), never crash."""
        backoff = backoff or Backoff(initial=max(0.5, interval), maximum=60.0)
        while not stop():
            try:
                self.run_pass(force=once)
                backoff.reset()
            except (MineError, OSError) as exc:
                if once:
                    raise
                delay = backoff.next_delay()
                if isinstance(exc, (ChainUnreachableError, StoreError, OSError)):  # an outage: back off
                    self.log("backoff", f"{type(exc).__name__}: {exc}; retrying in {delay:.0f} s", delay=delay)
                else:
                    self.log("error", f"{exc}; retrying in {delay:.0f} s", delay=delay)
                self.client.reset_nonce()
                _sleep(delay, stop)
                continue
            if once:
                return
            _sleep(interval, stop)


def _sleep(seconds: float, stop: Callable[[], bool]) -> None:
    end = time.monotonic() + seconds
    while not stop() and time.monotonic() < end:
        time.sleep(min(0.5, max(0.0, end - time.monotonic())))


# ---------------------------------------------------------------------- owner side


def evaluate_loop(client: SonarClient, store: Store, home: MineHome, bounty_ids: list[int] | None, log: Log, *,
                  min_round: int = 4, max_wait: float = 0.5, interval: float = 2.0, once: bool = False,
                  hold: bool = True, stop: Callable[[], bool] = lambda: False) -> tuple[int, int]:
    """The owner's `mine evaluate --watch [--all]`: settle rounds of every bounty served, with backoff.

    `bounty_ids` None: every open bounty this mine owns (owned/*.json), re-listed each pass so a bounty
    posted later is served too. With `hold` (not with `once`), a round that makes no new version waits
    (:func:`mine.owner.settle_round`'s ``hold``) and is judged again when more updates are queued,
    and settled as it is once its oldest update has waited `max_wait` of its window. Returns
    (accepted, settled) totals.
    """
    from mine.owner import OwnedBounty, Validation, pending_items, settle_round
    from mine.vault import Vault
    from mine.versions import load_version

    served: dict[int, tuple[Any, Any, Any]] = {}
    held: dict[int, int] = {}  # bounty -> how many were queued when its round was last held
    accepted = total = 0
    backoff = Backoff(initial=max(0.5, interval), maximum=60.0)
    while not stop():
        try:
            ids = bounty_ids if bounty_ids is not None else sorted(
                int(p.stem) for p in home.owned.glob("*.json") if p.stem.isdigit())
            worked = False
            for bid in ids:
                b = client.bounty(bid)
                if b.status != BountyStatus.OPEN:
                    continue
                if bid not in served:
                    owned = OwnedBounty.load(home, bid)
                    current = load_version(client, store, bid)
                    val = Validation.from_vault(Vault(home), owned.validation, current.manifest)
                    served[bid] = (owned, current, val)
                    log("serving", f"bounty {bid}: serving (validation {owned.validation})", bounty=bid)
                owned, current, val = served[bid]
                queued, oldest = pending_items(client, bid)
                waited = oldest is not None and client.now() - oldest >= max_wait * b.eval_window
                ready = queued > 0 and (once or queued >= min_round or waited)
                if not ready or (held.get(bid) == queued and not waited):
                    continue  # nothing new since the round was held: wait for more, or for the window
                result, current = settle_round(client, store, home, owned, val, current=current,
                                               hold=hold and not once and not waited)
                served[bid] = (owned, current, val)
                if result is None:
                    continue
                if result.held:
                    held[bid] = queued
                    log("held", f"bounty {bid}: round #{result.first}..#{result.first + result.held - 1} makes no new "
                        "version; it waits for more updates of the same version", bounty=bid, first=result.first,
                        count=result.held)
                    continue
                held.pop(bid, None)
                if result.waiting:
                    log("waiting", f"bounty {bid}: {result.waiting} submission(s) not fetchable yet; they wait",
                        bounty=bid)
                if result.count:
                    worked = True
                    n_ok = sum(1 for v in result.verdicts if v["share_bps"])
                    accepted += n_ok
                    total += result.count
                    log("settled", f"bounty {bid}: round #{result.first}..#{result.first + result.count - 1}, "
                        f"accepted {n_ok} of {result.count}, score {result.score_before:.4f} → {result.score_after:.4f}",
                        bounty=bid, first=result.first, count=result.count, accepted=n_ok)
                    if result.retracted:
                        log("retracted", f"bounty {bid}: version {result.version} takes back out what the earlier "
                            f"accepted updates of {', '.join(result.retracted)} put on the inputs their code-9 "
                            "forfeits named", bounty=bid, miners=result.retracted)
            backoff.reset()
            if worked:
                continue
            if once:
                break
            _sleep(interval, stop)
        except (ChainError, StoreError, OSError) as exc:
            if once:
                raise
            delay = backoff.next_delay()
            if isinstance(exc, (ChainUnreachableError, StoreError, OSError)):  # an outage: back off
                log("backoff", f"{type(exc).__name__}: {exc}; retrying in {delay:.0f} s", delay=delay)
            else:
                log("error", f"{exc}; retrying in {delay:.0f} s", delay=delay)
            client.reset_nonce()
            served.clear()
            _sleep(delay, stop)
    return accepted, total
