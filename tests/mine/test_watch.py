"""`mine watch` end to end: real anvil, real Sonar, the embedded store, real OS processes.

The owner posts a digits bounty; two `mine watch` daemons (separate homes, separate processes) earn on
it with no other command while the owner settles rounds; one is killed with SIGKILL while training
and restarted. No submission is made twice, no stake is lost, and both withdraw their credits.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from mine import datasets
from mine.chain import SonarClient, SubmissionStatus, connect
from mine.cli import cli
from mine.devnet import dev_account
from mine.errors import ChainUnreachableError, ExitStatus
from mine.home import MineHome
from mine.miner import Journal
from mine.model import default_manifest, with_normalization
from mine.watch import Backoff, Watcher, WatchLog, home_lock, lock_holder

OWNER, MINER_A, MINER_B = 0, 3, 4


@dataclass
class Market:
    rpc: str
    sonar: SonarClient
    store_spec: str
    owner_home: Path
    miner_homes: dict[int, Path]
    model_path: Path
    tmp: Path

    def base(self, home: Path, dev: int) -> list[str]:
        return ["--home", str(home), "--rpc", self.rpc, "--sonar", self.sonar.address, "--store", self.store_spec,
                "--dev-account", str(dev)]

    def run(self, home: Path, dev: int, *args: str, ok: bool = True) -> Result:
        result = CliRunner().invoke(cli, [*self.base(home, dev), *args], catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output
        return result

    def owner(self, *args: str) -> Result:
        return self.run(self.owner_home, OWNER, *args)

    def post(self, reward: str = "1ether", stake: str = "0.01ether") -> int:
        result = self.owner("bounty", "create", "--model", str(self.model_path), "--validation", "validation",
                            "--reward", reward, "--target", "0.99", "--deadline", "2h", "--eval-window", "30m",
                            "--stake", stake, "--setting", "subgroup_tolerance=0.2")
        match = re.search(r"bounty (\d+) posted", result.output)
        assert match, result.output
        return int(match.group(1))

    def spawn(self, dev: int, *args: str) -> subprocess.Popen[bytes]:
        home = self.miner_homes[dev]
        out = (home.parent / f"{home.name}.out").open("ab")
        return subprocess.Popen([sys.executable, "-m", "mine.cli", *self.base(home, dev), "watch", "--json", *args],
                                stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy())


def write_rules(home: Path, **rules: object) -> None:
    config = json.loads((home / "config.json").read_text())
    config["watch"] = {"epochs": 2, **rules}
    (home / "config.json").write_text(json.dumps(config))


def log_events(home: Path) -> list[dict]:
    path = home / "watch.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture(scope="module")
def market(rpc_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Market]:
    tmp = tmp_path_factory.mktemp("watch")
    sonar = SonarClient.deploy(connect(rpc_url), dev_account(OWNER))
    data = datasets.load("digits")
    split = datasets.train_validation_split(data.X, data.y, validation_fraction=0.25, seed=0, task=data.task)
    shards = datasets.dirichlet_shards(split.y_train, 4, alpha=100.0, seed=0, task=data.task)
    val_path = tmp / "owner-data" / "validation.csv"
    val_path.parent.mkdir()
    datasets.write_csv(val_path, split.X_val, split.y_val, data.feature_names, data.target_name)
    model_path = tmp / "owner-data" / "digits.json"
    model_path.write_bytes(with_normalization(default_manifest("digits"), split.X_val).to_json())
    m = Market(rpc_url, sonar, f"embedded:{tmp / 'shared-blocks'}", tmp / "owner",
               {MINER_A: tmp / "miner-a", MINER_B: tmp / "miner-b"}, model_path, tmp)
    m.run(m.owner_home, OWNER, "init", "--rpc", rpc_url, "--sonar", sonar.address)
    m.owner("vault", "add", "validation", str(val_path), "--target", data.target_name)
    for i, (dev, home) in enumerate(m.miner_homes.items()):
        shard_path = tmp / f"data-{dev}" / "shard.csv"
        shard_path.parent.mkdir()
        datasets.write_csv(shard_path, split.X_train[shards[i]], split.y_train[shards[i]], data.feature_names,
                           data.target_name)
        m.run(home, dev, "init", "--rpc", rpc_url, "--sonar", sonar.address)
        m.run(home, dev, "vault", "add", "private", str(shard_path), "--target", data.target_name)
        m.run(home, dev, "vault", "budget", "private", "--set", "100")  # room for every DP update of this module
        write_rules(home)
    yield m


def _wait(predicate, timeout: float, what: str, procs: list[subprocess.Popen[bytes]] = ()) -> None:  # type: ignore[assignment]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        for p in procs:
            assert p.poll() is None, f"a mine watch exited with {p.returncode} while waiting for {what}"
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _submissions(m: Market, bounty: int, miner: str) -> list[dict]:
    return [dict(e["args"]) for e in m.sonar.events("UpdateSubmitted", bountyId=bounty, miner=miner)]


def test_two_daemons_earn_survive_sigkill_and_withdraw(market: Market) -> None:
    m = market
    bounty = m.post()
    a, b = dev_account(MINER_A).address, dev_account(MINER_B).address
    procs = {MINER_A: m.spawn(MINER_A, "--interval", "0.3"), MINER_B: m.spawn(MINER_B, "--interval", "0.3")}
    try:
        # round 1: both discover the bounty and submit with no command from us
        _wait(lambda: m.sonar.bounty(bounty).submissions >= 2, 120, "two submissions", list(procs.values()))
        m.owner("evaluate", str(bounty))
        version = m.sonar.bounty(bounty).latest_version
        assert version >= 1, "the first round accepted nothing"
        # round 2: kill A while it trains from the new version, then restart it
        _wait(lambda: any(e["event"] == "train" and e.get("version") == version for e in log_events(m.miner_homes[MINER_A])),
              60, "A training from the new version", list(procs.values()))
        procs[MINER_A].send_signal(signal.SIGKILL)
        procs[MINER_A].wait(10)
        assert lock_holder(MineHome(m.miner_homes[MINER_A])) is None  # the OS released the lock with the process
        procs[MINER_A] = m.spawn(MINER_A, "--interval", "0.3")
        _wait(lambda: all(any(s["baseVersion"] == version for s in _submissions(m, bounty, who)) for who in (a, b)),
              120, "both submitting from the new version", list(procs.values()))
        m.owner("evaluate", str(bounty))
        # both withdraw their credits on their own once the round is settled
        _wait(lambda: m.sonar.credits(a) == 0 and m.sonar.credits(b) == 0, 60, "credits withdrawn",
              list(procs.values()))
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs.values():
            p.wait(30)
    # the owner goes away; past the deadline and the windows, one more pass reclaims what is left unjudged
    m.sonar.w3.provider.make_request("evm_increaseTime", [3 * 3600])
    m.sonar.w3.provider.make_request("evm_mine", [])
    for dev in (MINER_A, MINER_B):
        assert m.spawn(dev, "--once").wait(120) == 0
    for dev, who in ((MINER_A, a), (MINER_B, b)):
        subs = _submissions(m, bounty, who)
        # no duplicate: one submission per model version, each update stored once
        assert len({s["baseVersion"] for s in subs}) == len(subs), subs
        assert len({bytes(s["digest"]) for s in subs}) == len(subs)
        # no lost stake: every stake on chain is in the journal and settled (none stuck unjudged)
        journal = {e.index: e for e in Journal(MineHome(m.miner_homes[dev])).entries() if e.state == "submitted"}
        assert sorted(journal) == sorted(int(s["index"]) for s in subs)
        for s in subs:
            assert m.sonar.submission(bounty, int(s["index"])).status in (
                SubmissionStatus.ACCEPTED, SubmissionStatus.REJECTED, SubmissionStatus.RECLAIMED)
        withdrawn = m.sonar.events("Withdrawn", account=who)
        assert withdrawn and m.sonar.credits(who) == 0
        # what vested (accepted rewards and stakes) was released once the bounty ended, then withdrawn
        assert m.sonar.vesting(bounty, who).total == 0
        accepted = m.sonar.events("UpdateAccepted", bountyId=bounty, miner=who)
        assert bool(m.sonar.events("Released", bountyId=bounty, miner=who)) == bool(accepted)
        events = [e["event"] for e in log_events(m.miner_homes[dev])]
        assert "discovered" in events and "submitted" in events and "withdrew" in events
    assert any(m.sonar.submission(bounty, i).status == SubmissionStatus.ACCEPTED
               for i in range(m.sonar.bounty(bounty).submissions))


def test_one_daemon_per_home(market: Market) -> None:
    home = MineHome(market.miner_homes[MINER_B])
    with home_lock(home):
        result = market.run(home.root, MINER_B, "watch", "--once", ok=False)
    assert result.exit_code == ExitStatus.CONFIG
    assert f"pid {os.getpid()}" in result.output and "is running on" in result.output


def test_a_bounty_below_the_min_reward_is_skipped_with_a_reason(market: Market) -> None:
    home = market.miner_homes[MINER_B]
    bounty = market.post(reward="0.02ether", stake="0.001ether")
    write_rules(home, min_reward="0.5")
    try:
        result = market.run(home, MINER_B, "watch", "--once")
    finally:
        write_rules(home)
    assert re.search(rf"bounty {bounty}: skipped, reward 0\.007 ETH < min 0\.5 ETH", result.output), result.output
    assert market.sonar.bounty(bounty).submissions == 0


def test_unreachable_chain_backs_off_with_a_log_line(market: Market, tmp_path: Path) -> None:
    home = MineHome(market.miner_homes[MINER_B])
    client = SonarClient.open(market.rpc, market.sonar.address, dev_account(MINER_B))
    from mine.store import EmbeddedStore

    stream = (tmp_path / "out.log").open("w+")
    watcher = Watcher(home, client, EmbeddedStore(tmp_path / "blocks"), WatchLog(home, stream=stream))
    client.w3.provider.endpoint_uri = "http://127.0.0.1:9"  # nothing listens on the discard port
    backoff = Backoff(initial=0.05, maximum=0.2)
    watcher.run(interval=0.05, stop=lambda: backoff.failures >= 3, backoff=backoff)
    stream.seek(0)
    lines = [line for line in stream.read().splitlines() if "retrying in" in line]
    assert len(lines) == 3, lines
    with pytest.raises(ChainUnreachableError):
        watcher.run(once=True)


def test_crash_after_the_submit_tx_is_finished_from_the_journal(market: Market, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The process dies after the submit transaction is mined but before the journal records it."""
    m = market
    home = MineHome(m.miner_homes[MINER_A])
    m.post()
    me = dev_account(MINER_A).address
    real_submit = SonarClient.submit

    def crash_after(self: SonarClient, *args: object, **kwargs: object) -> None:
        real_submit(self, *args, **kwargs)
        raise KeyboardInterrupt  # stands for SIGKILL at the worst moment: the stake is paid, the journal says "prepared"

    def watcher() -> Watcher:
        from mine.store import EmbeddedStore

        client = SonarClient.open(m.rpc, m.sonar.address, dev_account(MINER_A))
        store = EmbeddedStore(Path(m.store_spec.split(":", 1)[1]))
        return Watcher(home, client, store, WatchLog(home, stream=(tmp_path / "out.log").open("a")))

    with monkeypatch.context() as patch:
        patch.setattr(SonarClient, "submit", crash_after)
        with pytest.raises(KeyboardInterrupt):
            watcher().run_pass(force=True)
    prepared = [e for e in Journal(home).entries() if e.state == "prepared"]
    assert len(prepared) == 1
    crashed = prepared[0]
    mined = [s for s in _submissions(m, crashed.bounty, me) if bytes(s["digest"]).hex() == crashed.digest]
    assert len(mined) == 1  # the stake is on chain ...
    count = len(_submissions(m, crashed.bounty, me))
    watcher().run_pass(force=True)  # ... and the restarted daemon finds it instead of submitting again
    entry = next(e for e in Journal(home).entries() if e.update == crashed.update)
    assert entry.state == "submitted" and entry.index == int(mined[0]["index"])
    assert len(_submissions(m, crashed.bounty, me)) == count  # waiting in the queue: nothing new sent


def test_evaluate_all_serves_every_owned_bounty_and_locks_the_home(market: Market) -> None:
    m = market
    first, second = m.post(), m.post()
    m.run(m.miner_homes[MINER_B], MINER_B, "watch", "--once")  # submits to every open bounty it fits
    assert m.sonar.bounty(first).submissions >= 1 and m.sonar.bounty(second).submissions >= 1
    result = m.owner("evaluate", "--all")
    assert re.search(r"accepted \d+ of [1-9]\d* updates", result.output), result.output
    owned = [int(p.stem) for p in (m.owner_home / "owned").glob("*.json")]
    for bid in owned:
        b = m.sonar.bounty(bid)
        assert b.status.name != "OPEN" or b.next_eval == b.submissions, bid  # nothing left queued anywhere
    with home_lock(MineHome(m.owner_home), "evaluate"):
        locked = m.run(m.owner_home, OWNER, "evaluate", "--watch", "--all", ok=False)
    assert locked.exit_code == ExitStatus.CONFIG and "another `mine evaluate`" in locked.output


def test_a_bounty_that_stopped_accepting_gets_no_more_stakes(market: Market) -> None:
    m = market
    home = m.miner_homes[MINER_B]
    bounty = m.post()
    state_path = home / "watch-state.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {"sonar": m.sonar.address}
    state["last_block"] = int(m.sonar.w3.eth.block_number)  # the posting is already known ...
    state.setdefault("bounties", {})[str(bounty)] = {"rounds_without_version": 3, "mine_rejected_in_a_row": 0,
                                                     "stopped": ""}  # ... and its last 3 rounds made no version
    state_path.write_text(json.dumps(state))
    result = m.run(home, MINER_B, "watch", "--once")
    assert f"bounty {bounty}: skipped, stopped submitting: its last 3 round(s) made no new version" in result.output
    assert m.sonar.bounty(bounty).submissions == 0


def test_a_bounty_whose_model_is_out_of_reach_does_not_stall_the_others(market: Market) -> None:
    """A model posted from the owner's own store is not in the miners' store: that bounty is skipped
    for now (and looked for again later), and the daemon goes on to the next bounty."""
    m = market
    home = m.miner_homes[MINER_B]
    args = [*m.base(m.owner_home, OWNER), "--store", "embedded", "bounty", "create", "--model", str(m.model_path),
            "--validation", "validation", "--reward", "1ether", "--target", "0.99", "--eval-window", "30m"]
    posted = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert posted.exit_code == 0 and "warning: this mine's store is its own" in posted.output, posted.output
    hidden = int(re.search(r"bounty (\d+) posted", posted.output).group(1))
    reachable = m.post()
    result = m.run(home, MINER_B, "watch", "--once")
    assert re.search(rf"bounty {hidden}: skipped for now, its model cannot be fetched .* looked for again every "
                     r"120 s", result.output), result.output
    assert m.sonar.bounty(hidden).submissions == 0
    assert _submissions(m, reachable, dev_account(MINER_B).address)


def test_a_dataset_without_privacy_budget_left_is_not_trained_on(market: Market) -> None:
    m = market
    home = m.miner_homes[MINER_B]
    m.run(home, MINER_B, "vault", "budget", "private", "--set", "0.001")
    try:
        bounty = m.post()
        result = m.run(home, MINER_B, "watch", "--once")
    finally:
        m.run(home, MINER_B, "vault", "budget", "private", "--set", "100")
    assert re.search(rf"bounty {bounty}: skipped, .*budget", result.output), result.output
    assert m.sonar.bounty(bounty).submissions == 0


def test_the_owners_daemon_holds_a_round_without_gain_until_its_oldest_has_waited(market: Market) -> None:
    """`mine evaluate --watch` leaves a round that makes no new version unsettled, without judging it
    again until the queue grows or its oldest update has waited --max-wait of its window; then it
    settles the round as it is (no gain: rejected, stake returned)."""
    import io

    from mine import attacks
    from mine.model import make_update, read_update
    from mine.store import EmbeddedStore
    from mine.versions import load_version
    from mine.watch import evaluate_loop

    m = market
    bounty = m.post()  # window 30 minutes
    home, owner_home = m.miner_homes[MINER_A], MineHome(m.owner_home)
    store = EmbeddedStore(Path(m.store_spec.split(":", 1)[1]))
    before = set((home / "outbox").glob("*.safetensors"))
    m.run(home, MINER_A, "train", str(bounty), "--dataset", "private", "--epochs", "1", "--seed", "71", "--no-dp")
    (path,) = set((home / "outbox").glob("*.safetensors")) - before
    current = load_version(m.sonar, store, bounty)
    delta, meta = read_update(current.manifest, path.read_bytes())
    small = attacks.scale_update(delta, 1e-6)  # an honest direction, a step too small to change the score
    path.write_bytes(make_update(current.state, {k: current.state[k] + small[k] for k in small}, meta))
    m.run(home, MINER_A, "submit", str(bounty), str(path))

    def serve(seconds: float) -> list[str]:
        out, end = io.StringIO(), time.monotonic() + seconds
        m.sonar.reset_nonce()
        log = WatchLog(owner_home, as_json=True, stream=out, name="evaluate")
        evaluate_loop(m.sonar, store, owner_home, [bounty], log, min_round=1, max_wait=0.5, interval=0.1,
                      stop=lambda: time.monotonic() > end)
        return [json.loads(line)["event"] for line in out.getvalue().splitlines()]

    w3 = m.sonar.w3
    snapshot = w3.provider.make_request("evm_snapshot", [])["result"]
    try:
        events = serve(2.0)  # many passes: judged and held once
        assert events.count("held") == 1 and "settled" not in events, events
        assert m.sonar.bounty(bounty).next_eval == 0
        w3.provider.make_request("evm_increaseTime", [16 * 60])  # past half of the 30-minute window
        w3.provider.make_request("evm_mine", [])
        events = serve(2.0)
        assert "settled" in events and "held" not in events, events
        assert m.sonar.bounty(bounty).next_eval == 1
        sub = m.sonar.submission(bounty, 0)
        assert sub.status == SubmissionStatus.REJECTED
    finally:
        w3.provider.make_request("evm_revert", [snapshot])
        m.sonar.reset_nonce()
