"""The `mine` command end to end: real anvil, real Sonar, both store backends, CliRunner.

One owner and one miner, each with its own mine home; the owner posts an auditable digits bounty,
the miner trains on its private shard and submits (sealed, one transaction), the owner settles the
round, the miner withdraws. Then: the raw rows never appear in anything that left the miner, an
interrupted submit never submits twice, a copied CID is rejected (code 6) while the original is
paid, a store outage makes nothing wait but rejects nothing, a too-short window is refused, errors
have their exit codes, and `mine audit` catches an owner that misreports a round.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

from mine import datasets, dp
from mine.chain import SonarClient, SubmissionStatus, Verdict, connect
from mine.cli import cli, verdict_line
from mine.devnet import dev_account, free_port
from mine.errors import ExitStatus
from mine.model import default_manifest, read_metadata, with_normalization
from opacus.accountants import RDPAccountant

OWNER, MINER = 0, 1


@dataclass
class World:
    rpc: str
    sonar: SonarClient
    store_spec: str
    owner_home: Path
    miner_home: Path
    shard_path: Path
    val_path: Path
    model_path: Path
    runner: CliRunner

    def run(self, home: Path, *args: str, dev: int | None = None, ok: bool = True) -> Result:
        base = ["--home", str(home), "--rpc", self.rpc, "--sonar", self.sonar.address, "--store", self.store_spec]
        if dev is not None:
            base += ["--dev-account", str(dev)]
        result = self.runner.invoke(cli, [*base, *args], catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output
        return result

    def owner(self, *args: str, ok: bool = True) -> Result:
        return self.run(self.owner_home, *args, dev=OWNER, ok=ok)

    def miner(self, *args: str, ok: bool = True) -> Result:
        return self.run(self.miner_home, *args, dev=MINER, ok=ok)


@pytest.fixture(scope="module", params=["embedded", "ipfs"])
def world(request: pytest.FixtureRequest, rpc_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp(f"cli-{request.param}")
    store_spec = f"embedded:{tmp / 'shared-blocks'}" if request.param == "embedded" else request.getfixturevalue("ipfs_api")
    sonar = SonarClient.deploy(connect(rpc_url), dev_account(OWNER))
    data = datasets.load("digits")
    split = datasets.train_validation_split(data.X, data.y, validation_fraction=0.25, seed=0, task=data.task)
    shard = datasets.dirichlet_shards(split.y_train, 4, alpha=100.0, seed=0, task=data.task)[0]
    shard_path, val_path = tmp / "miner-data" / "shard.csv", tmp / "owner-data" / "validation.csv"
    shard_path.parent.mkdir()
    val_path.parent.mkdir()
    datasets.write_csv(shard_path, split.X_train[shard], split.y_train[shard], data.feature_names, data.target_name)
    datasets.write_csv(val_path, split.X_val, split.y_val, data.feature_names, data.target_name)
    model_path = tmp / "owner-data" / "digits.json"
    model_path.write_bytes(with_normalization(default_manifest("digits"), split.X_val).to_json())
    w = World(rpc_url, sonar, store_spec, tmp / "owner", tmp / "miner", shard_path, val_path, model_path, CliRunner())
    for home in (w.owner_home, w.miner_home):  # a loopback node answers at once: a miss is known within 2 s
        w.run(home, "init", "--rpc", rpc_url, "--sonar", sonar.address, "--store-timeout", "2")
    w.owner("vault", "add", "validation", str(val_path), "--target", data.target_name)
    w.miner("vault", "add", "private", str(shard_path), "--target", data.target_name)
    yield w


def _bounty_id(result: Result) -> int:
    match = re.search(r"bounty (\d+) posted", result.output)
    assert match, result.output
    return int(match.group(1))


@pytest.fixture(scope="module")
def posted(world: World) -> int:
    result = world.owner("bounty", "create", "--model", str(world.model_path), "--validation", "validation",
                         "--reward", "1ether", "--target", "0.99", "--deadline", "2h", "--eval-window", "1h",
                         "--stake", "0.01ether", "--auditable")
    return _bounty_id(result)


def test_init_creates_private_home(world: World) -> None:
    assert world.miner_home.stat().st_mode & 0o777 == 0o700
    config = json.loads((world.miner_home / "config.json").read_text())
    assert config["sonar"] == world.sonar.address and config["chain_id"] == 31337
    assert config["store_timeout"] == 2.0


def test_bounties_lists_the_posted_bounty_with_fit(world: World, posted: int) -> None:
    result = world.miner("bounties")
    row = next(line for line in result.output.splitlines() if line.strip().startswith(f"│ {posted} "))
    assert "digits-mlp" in row and "private" in row
    assert "0.01 ETH" in row and "60 min" in row and "yes" in row  # stake, eval window, auditable

    assert "not in your store" not in result.output


def test_a_store_no_other_mine_reads_is_named(world: World, posted: int) -> None:
    """A mine on its own embedded store cannot see the owner's model (and an owner posting from one
    is warned before it escrows anything); the table says so and how to reach the owner's content."""
    def run(home: Path, *args: str, dev: int) -> Result:
        base = ["--home", str(home), "--rpc", world.rpc, "--sonar", world.sonar.address, "--store", "embedded",
                "--dev-account", str(dev)]
        return world.runner.invoke(cli, [*base, *args], catch_exceptions=False)

    listed = run(world.miner_home, "bounties", dev=MINER)
    assert listed.exit_code == 0, listed.output
    row = next(line for line in listed.output.splitlines() if line.strip().startswith(f"│ {posted} "))
    assert "not in your" in row and "private" not in row  # the fit is unknown without the model
    assert "note: a model 'not in your store'" in listed.output and "--gateway" in listed.output
    created = run(world.owner_home, "bounty", "create", "--model", str(world.model_path), "--validation",
                  "validation", "--reward", "0.01ether", "--target", "0.99", "--max-epsilon", "8", dev=OWNER)
    assert created.exit_code == 0, created.output
    warning = created.output.index("warning: this mine's store is its own")
    assert warning < created.output.index("posted") and str(world.owner_home / "blocks") in created.output


def test_train_submit_evaluate_withdraw(world: World, posted: int) -> None:
    world.miner("train", str(posted), "--dataset", "private", "--epochs", "2", "--seed", "1")
    updates = sorted((world.miner_home / "outbox").glob("*.safetensors"))
    assert len(updates) == 1
    submitted = world.miner("submit", str(posted))
    assert "as #0" in submitted.output
    assert world.sonar.submission(posted, 0).status == SubmissionStatus.SUBMITTED
    # what went to the store is sealed to the owner: not the update's bytes
    (event,) = world.sonar.events("UpdateSubmitted", bountyId=posted)
    assert sorted((world.miner_home / "outbox").glob("*.sealed"))[0].read_bytes() != updates[0].read_bytes()

    evaluated = world.owner("evaluate", str(posted))
    assert "accepted 1 of 1" in evaluated.output, evaluated.output
    bounty = world.sonar.bounty(posted)
    assert bounty.latest_version == 1 and bounty.paid > 0
    # the owner keeps the miner's pooled evidence for later rounds (`mine audit` rebuilds it)
    owned = json.loads((world.owner_home / "owned" / f"{posted}.json").read_text())
    evidence = owned["evidence"][dev_account(MINER).address.lower()]
    assert evidence["concentration_tests"] == 1 and len(evidence["concentration_terms"]) == 64

    status = world.miner("status")
    assert "accepted" in status.output and "both vesting until the bounty ends" in status.output
    # the reward and the stake vest until the bounty ends: nothing to withdraw yet, and it says why
    assert re.search(rf"vesting in bounty {posted}: [\d.]+ ETH .*until the bounty ends", status.output), status.output
    early = world.miner("withdraw").output
    assert f"nothing to withdraw (still vesting in bounty {posted}" in early, early
    w3 = world.sonar.w3
    snapshot = w3.provider.make_request("evm_snapshot", [])["result"]
    try:  # past the deadline (and every window): `withdraw` releases, then withdraws
        w3.provider.make_request("evm_increaseTime", [max(bounty.deadline, bounty.last_due) - world.sonar.now() + 1])
        w3.provider.make_request("evm_mine", [])
        vesting = world.sonar.vesting(posted, dev_account(MINER).address)
        assert vesting.rewards == bounty.paid and vesting.stakes == bounty.stake
        before = w3.eth.get_balance(dev_account(MINER).address)
        world.miner("withdraw")
        assert world.sonar.credits(dev_account(MINER).address) == 0
        assert world.sonar.vesting(posted, dev_account(MINER).address).total == 0
        assert w3.eth.get_balance(dev_account(MINER).address) > before + vesting.total - 10**16  # minus gas
        assert world.miner("withdraw").output.strip().endswith("\nnothing to withdraw")  # not an error
    finally:  # the module's later tests need the bounty open
        w3.provider.make_request("evm_revert", [snapshot])
        world.sonar.reset_nonce()


def _new_updates(world: World, existing: set[Path]) -> list[Path]:
    return sorted(set((world.miner_home / "outbox").glob("*.safetensors")) - existing,
                  key=lambda p: p.stat().st_mtime_ns)


def _discard(paths: list[Path]) -> None:
    for path in paths:
        path.unlink()
        path.with_suffix(".json").unlink()


def test_an_update_from_an_older_version_is_not_staked(world: World, posted: int) -> None:
    """The owner rejects an update trained from an older model version (stale, code 2): `mine submit`
    says so before any stake or gas is spent, and names the command that trains on the current one."""
    latest = world.sonar.bounty(posted).latest_version
    assert latest >= 1  # the round above made a version
    world.miner("train", str(posted), "--dataset", "private", "--epochs", "1", "--seed", "7")
    update = sorted((world.miner_home / "outbox").glob(f"bounty{posted}-*.safetensors"), key=lambda p: p.stat().st_mtime)[-1]
    meta_path = update.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    assert int(meta["base_version"]) == latest
    meta_path.write_text(json.dumps({**meta, "base_version": str(latest - 1)}))  # as if trained before the round
    submissions = world.sonar.bounty(posted).submissions
    refused = world.miner("submit", str(posted), str(update), ok=False)
    assert refused.exit_code != 0
    assert f"trained from version {latest - 1}" in refused.output and f"at version {latest} now" in refused.output
    assert f"mine train {posted} --dataset NAME" in refused.output
    assert world.sonar.bounty(posted).submissions == submissions
    for path in update.parent.glob(update.stem + ".*"):
        path.unlink()


def test_without_dp_same_seed_gives_same_update_bytes_and_says_dp_off(world: World, posted: int) -> None:
    existing = set((world.miner_home / "outbox").glob("*.safetensors"))
    for _ in range(2):
        out = world.miner("train", str(posted), "--dataset", "private", "--epochs", "1", "--seed", "7", "--no-dp")
        assert "WITHOUT differential privacy" in out.output
    first, second = _new_updates(world, existing)
    assert first.read_bytes() == second.read_bytes()
    assert read_metadata(first.read_bytes())["dp"] == "off"
    _discard([first, second])


def test_privacy_check_attacks_an_outbox_update_against_its_fetched_base(world: World, posted: int) -> None:
    existing = set((world.miner_home / "outbox").glob("*.safetensors"))
    world.miner("train", str(posted), "--dataset", "private", "--epochs", "1", "--seed", "2", "--no-dp")
    (update,) = _new_updates(world, existing)
    out = world.miner("privacy", "check", str(update), "--dataset", "private", "--steps", "20").output
    assert "no DP" in out and "label set" in out and "membership" in out and "re-identification" in out
    assert "verdict:" in out
    _discard([update])


def test_dp_update_records_epsilon_of_the_accountant_and_nothing_about_the_data(world: World, posted: int) -> None:
    existing = set((world.miner_home / "outbox").glob("*.safetensors"))
    out = world.miner("train", str(posted), "--dataset", "private", "--epsilon", "2.5", "--seed", "7")
    assert "ε = 2.4" in out.output or "ε = 2.5" in out.output, out.output
    for _ in range(1):
        world.miner("train", str(posted), "--dataset", "private", "--epsilon", "2.5", "--seed", "7")
    first, second = _new_updates(world, existing)
    assert first.read_bytes() != second.read_bytes()  # same seed, fresh noise
    meta = read_metadata(first.read_bytes())
    assert set(meta) == {"bounty", "base_version", "base_cid", "miner", "dp", "examples_bucket"}
    assert meta["miner"] == dev_account(MINER).address and meta["bounty"] == str(posted)
    rows = len(world.shard_path.read_text().splitlines()) - 1
    assert int(meta["examples_bucket"]) <= rows < 2 * int(meta["examples_bucket"])
    record = dp.parse_dp_metadata(meta["dp"])
    assert record is not None and record.epsilon <= 2.5 and record.delta <= 1 / rows
    acc = RDPAccountant()
    acc.history = [(record.noise_multiplier, record.sample_rate, record.steps)]
    assert record.epsilon == pytest.approx(acc.get_epsilon(delta=record.delta), rel=1e-9)
    _discard([first, second])


def test_vault_budget_shows_sets_and_refuses_past_it(world: World, posted: int) -> None:
    shown = world.miner("vault", "budget", "private")
    spent = float(re.search(r"spent ε = ([0-9.]+)", shown.output).group(1))
    assert spent > 0  # the updates trained above are on the ledger
    world.miner("vault", "budget", "private", "--set", f"{spent + 0.05:.3f}")
    existing = set((world.miner_home / "outbox").glob("*.safetensors"))
    refused = world.miner("train", str(posted), "--dataset", "private", "--epsilon", "2", ok=False)
    assert refused.exit_code == ExitStatus.VAULT and "out of privacy budget" in refused.output
    assert _new_updates(world, existing) == []
    assert "over" in world.miner("vault", "budget", "private").output
    world.miner("vault", "budget", "private", "--set", "100")


def _outgoing_bytes(world: World, output: str) -> bytes:
    """Everything that left the miner: stored blocks, calldata, event data, and what the CLI printed."""
    chunks: list[bytes] = [output.encode()]
    spec = world.store_spec
    if spec.startswith("embedded:"):
        for path in Path(spec.split(":", 1)[1]).rglob("*"):
            if path.is_file():
                chunks.append(path.read_bytes())
    else:
        for path in (world.miner_home / "outbox").glob("*.safetensors"):
            chunks.append(path.read_bytes())
    w3 = world.sonar.w3
    for number in range(w3.eth.block_number + 1):
        block = w3.eth.get_block(number, full_transactions=True)
        for tx in block["transactions"]:
            chunks.append(bytes(tx["input"]))
            for log in w3.eth.get_transaction_receipt(tx["hash"])["logs"]:
                chunks.append(bytes(log["data"]) + b"".join(bytes(t) for t in log["topics"]))
    return b"\n".join(chunks)


def test_raw_rows_never_leave_the_mine(world: World, posted: int) -> None:
    outputs = world.miner("train", str(posted), "--dataset", "private", "--epochs", "1", "--seed", "3").output
    outputs += world.miner("submit", str(posted)).output + world.miner("status").output
    haystack = _outgoing_bytes(world, outputs)
    lines = world.shard_path.read_text().splitlines()[1:]
    X, _y, _ = datasets.read_table(world.shard_path, target="digit")
    assert len(lines) > 50
    for line, row in zip(lines, X):
        features_text = line.rsplit(",", 1)[0]
        assert features_text.encode() not in haystack
        for dtype in (np.float32, np.float64):
            assert row.astype(dtype).tobytes() not in haystack
    # the check is able to fail: the shard itself would be found
    assert lines[0].rsplit(",", 1)[0].encode() in world.shard_path.read_bytes()


def test_version_0_records_every_policy_setting(world: World, posted: int) -> None:
    """An audit replays a bounty with the rules it was posted under, defaults included."""
    import dataclasses

    from mine.owner import policy_of
    from mine.policy import RoundPolicy
    from mine.store import cid_from_chain, open_store
    from mine.versions import fetch_record

    mv = world.sonar.model_version(posted, 0)
    record = fetch_record(open_store(world.store_spec, world.owner_home), cid_from_chain(mv.digest, mv.codec))
    fields = {f.name for f in dataclasses.fields(RoundPolicy)} - {"max_epsilon"}
    assert set(record.policy) == fields | {"name"}
    assert policy_of(record) == RoundPolicy(max_epsilon=record.max_epsilon)  # posted with the defaults
    # a bounty posted before a setting existed replays without it (the setting is off, not the new default)
    older = dataclasses.replace(record, policy={k: v for k, v in record.policy.items() if k not in RoundPolicy.ADDED_LATER})
    assert policy_of(older) == RoundPolicy(max_epsilon=record.max_epsilon, **RoundPolicy.ADDED_LATER)
    assert set(RoundPolicy.ADDED_LATER) <= fields and policy_of(older) != policy_of(record)


def test_interrupted_submit_never_submits_twice(world: World, posted: int, monkeypatch: pytest.MonkeyPatch) -> None:
    submissions_before = len(world.sonar.events("UpdateSubmitted", bountyId=posted))
    real_submit = SonarClient.submit

    def crash_before(*_args: object, **_kwargs: object) -> None:
        raise KeyboardInterrupt

    def crash_after(self: SonarClient, *args: object, **kwargs: object) -> None:
        real_submit(self, *args, **kwargs)  # mined, but the process dies before the journal says so
        raise KeyboardInterrupt

    for crash in (crash_before, crash_after):
        world.miner("train", str(posted), "--dataset", "private", "--epochs", "1", "--seed", "11")
        with monkeypatch.context() as m:
            m.setattr(SonarClient, "submit", crash)
            result = world.miner("submit", str(posted), ok=False)
        assert result.exit_code == ExitStatus.INTERRUPTED, result.output
        journal = json.loads((world.miner_home / "journal.json").read_text())
        assert [e["state"] for e in journal if e["state"] != "submitted"] == ["prepared"]
        world.miner("status")  # finishes it: submits (first case) or finds the mined one (second)
        journal = json.loads((world.miner_home / "journal.json").read_text())
        assert all(e["state"] == "submitted" for e in journal)
    assert len(world.sonar.events("UpdateSubmitted", bountyId=posted)) == submissions_before + 2
    world.owner("evaluate", str(posted))


def test_a_round_of_submissions_is_pipelined_and_journalled(world: World, posted: int, tmp_path: Path) -> None:
    """`submit_many` (what the demo uses): two mines' submissions broadcast back to back, each
    journalled with its mined index; running it again submits nothing twice."""
    from mine.home import MineHome
    from mine.miner import submit_many
    from mine.store import open_store

    second = tmp_path / "miner2"
    world.run(second, "init", "--rpc", world.rpc, "--sonar", world.sonar.address, dev=2)
    world.run(second, "vault", "add", "private", str(world.shard_path), "--target", datasets.load("digits").target_name,
              dev=2)
    jobs = []
    for home, dev in ((world.miner_home, MINER), (second, 2)):
        world.run(home, "train", str(posted), "--dataset", "private", "--epochs", "1", "--seed", str(40 + dev), dev=dev)
        update = sorted((home / "outbox").glob("*.safetensors"), key=lambda p: p.stat().st_mtime)[-1]
        jobs.append((MineHome(home), world.sonar.with_account(dev_account(dev)), update))
    store = open_store(world.store_spec, world.miner_home)
    before = len(world.sonar.events("UpdateSubmitted", bountyId=posted))
    entries = submit_many(jobs, store, posted)
    mined = world.sonar.events("UpdateSubmitted", bountyId=posted)[before:]
    assert len(mined) == 2 and [e.state for e in entries] == ["submitted", "submitted"]
    for entry, (_, client, _) in zip(entries, jobs):
        sub = world.sonar.submission(posted, entry.index)
        assert sub.miner == client.account.address and sub.status == SubmissionStatus.SUBMITTED
        assert store.has(entry.cid)  # the sealed update is in the store the owner reads
    assert [e.index for e in submit_many(jobs, store, posted)] == [e.index for e in entries]
    assert len(world.sonar.events("UpdateSubmitted", bountyId=posted)) == before + 2
    world.owner("evaluate", str(posted))


def test_copied_cid_is_rejected_and_the_original_paid(world: World) -> None:
    # a fresh bounty: the original is judged against version 0 and no history of earlier rounds
    posted = _bounty_id(world.owner("bounty", "create", "--model", str(world.model_path), "--validation",
                                    "validation", "--reward", "0.5ether", "--target", "0.99", "--eval-window", "1h"))
    world.miner("train", str(posted), "--dataset", "private", "--epochs", "3", "--seed", "31", "--no-dp")
    world.miner("submit", str(posted))
    original = world.sonar.events("UpdateSubmitted", bountyId=posted)[-1]["args"]
    # a copier replays the CID it saw on chain under its own address, paying the stake
    copier = world.sonar.with_account(dev_account(2))
    bounty = world.sonar.bounty(posted)
    copy_index, _ = copier.submit(posted, bytes(original["digest"]), int(original["codec"]),
                                  int(original["baseVersion"]), stake=bounty.stake)
    world.sonar.reset_nonce()
    evaluated = world.owner("evaluate", str(posted))
    assert "rejected [6]" in evaluated.output, evaluated.output
    rejected = {int(e["args"]["index"]): e["args"] for e in world.sonar.events("UpdateRejected", bountyId=posted)}
    assert rejected[copy_index]["reason"] == 6 and not rejected[copy_index]["refunded"]
    assert world.sonar.submission(posted, int(original["index"])).status == SubmissionStatus.ACCEPTED, evaluated.output
    # one round, one transaction: the accepted shares of the round sum to 10000 bps
    (settled,) = [e["args"] for e in world.sonar.events("RoundSettled", bountyId=posted)]
    assert int(settled["count"]) == 2 and int(settled["version"]) == 1
    shares = [int(e["args"]["shareBps"]) for e in world.sonar.events("UpdateAccepted", bountyId=posted)]
    assert shares and sum(shares) == 10_000


def test_store_outage_makes_updates_wait_never_rejects(world: World, posted: int, tmp_path: Path) -> None:
    from mine.sealed import public_key_from_record, seal
    from mine.store import compute_cid, cid_to_chain
    from mine.versions import load_version

    # a submission whose ciphertext the owner's store cannot deliver (yet)
    world.miner("train", str(posted), "--dataset", "private", "--epochs", "1", "--seed", "41", "--no-dp")
    update = max((world.miner_home / "outbox").glob("*.safetensors"), key=lambda p: p.stat().st_mtime_ns)
    record = load_version(world.sonar, _store(world), posted, 0).record
    ciphertext, _ = seal(update.read_bytes(), public_key_from_record(record.encryption))
    sealed = tmp_path / "update.sealed"
    sealed.write_bytes(ciphertext)
    digest, codec = cid_to_chain(compute_cid(ciphertext))
    miner = world.sonar.with_account(dev_account(MINER))
    index, _ = miner.submit(posted, digest, codec, world.sonar.bounty(posted).latest_version,
                            stake=world.sonar.bounty(posted).stake)
    rejected_before = len(world.sonar.events("UpdateRejected", bountyId=posted))
    world.sonar.reset_nonce()
    result = world.owner("evaluate", str(posted))
    assert "could not be fetched" in result.output and "accepted 0 of 0" in result.output, result.output
    assert world.sonar.submission(posted, index).status == SubmissionStatus.SUBMITTED
    assert len(world.sonar.events("UpdateRejected", bountyId=posted)) == rejected_before
    # the store has it now: the update is judged
    world.miner("ipfs", "add", str(sealed))
    world.owner("evaluate", str(posted))
    assert world.sonar.submission(posted, index).status != SubmissionStatus.SUBMITTED
    update.unlink()
    update.with_suffix(".json").unlink()


def test_too_short_window_is_refused(world: World) -> None:
    created = world.owner("bounty", "create", "--model", str(world.model_path), "--validation", "validation",
                          "--reward", "0.1ether", "--target", "0.99", "--eval-window", "10m")
    # no --max-epsilon: the owner is told that updates without DP skip the backdoor test
    assert "warning: updates trained without DP" in created.output and "--max-epsilon" in created.output
    short = _bounty_id(created)
    world.miner("train", str(short), "--dataset", "private", "--epochs", "1")
    submissions = world.sonar.bounty(short).submissions
    result = world.miner("submit", str(short), ok=False)
    assert result.exit_code == ExitStatus.CHAIN
    assert "below this mine's minimum" in result.output and "600 s" in result.output
    assert world.sonar.bounty(short).submissions == submissions
    for path in (world.miner_home / "outbox").glob(f"bounty{short}-*"):
        path.unlink()


def test_an_update_above_the_bounty_epsilon_cap_is_neither_trained_nor_staked(world: World) -> None:
    """The owner would forfeit it (code 7): `mine train` refuses before spending any privacy budget,
    `mine submit` before any stake moves; within the cap both go."""
    created = world.owner("bounty", "create", "--model", str(world.model_path), "--validation", "validation",
                          "--reward", "0.1ether", "--target", "0.99", "--eval-window", "1h", "--max-epsilon", "3")
    assert "backdoor test" not in created.output  # every update it takes is tested
    capped = _bounty_id(created)
    spent = world.miner("vault", "budget", "private").output
    result = world.miner("train", str(capped), "--dataset", "private", "--epsilon", "4", "--seed", "3", ok=False)
    assert result.exit_code == ExitStatus.VALIDATION, result.output
    assert "not trained" in result.output and "--epsilon 3" in result.output
    assert not list((world.miner_home / "outbox").glob(f"bounty{capped}-*"))
    assert world.miner("vault", "budget", "private").output == spent
    assert "not trained" in world.miner("train", str(capped), "--dataset", "private", "--no-dp", ok=False).output
    world.miner("train", str(capped), "--dataset", "private", "--epsilon", "3", "--seed", "3")
    (update,) = (world.miner_home / "outbox").glob(f"bounty{capped}-*.safetensors")
    # an update whose stated ε is above the cap (say, trained by another client) is not staked
    sidecar = update.with_suffix(".json")
    meta = json.loads(sidecar.read_text())
    good = meta["dp"]
    sidecar.write_text(json.dumps({**meta, "dp": json.dumps({**json.loads(good), "epsilon": 4.0})}))
    submissions = world.sonar.bounty(capped).submissions
    result = world.miner("submit", str(capped), str(update), ok=False)
    assert result.exit_code == ExitStatus.VALIDATION and "not submitted" in result.output, result.output
    assert world.sonar.bounty(capped).submissions == submissions
    sidecar.write_text(json.dumps({**meta, "dp": good}))
    assert "as #" in world.miner("submit", str(capped), str(update)).output
    assert world.sonar.bounty(capped).submissions == submissions + 1


def test_dp_training_above_the_bountys_learning_rate_is_refused_before_any_budget_is_spent(world: World,
                                                                                           posted: int) -> None:
    """The owner bounds a DP update by its steps times the bounty's learning rate (a larger one looks
    boosted, code 4): `mine train --lr` above it is refused before the privacy ledger is charged."""
    spent = world.miner("vault", "budget", "private").output
    before = set((world.miner_home / "outbox").glob(f"bounty{posted}-*"))
    result = world.miner("train", str(posted), "--dataset", "private", "--lr", "10", "--seed", "4", ok=False)
    assert result.exit_code == ExitStatus.VALIDATION, result.output
    assert "not trained" in result.output and "--lr 2" in result.output, result.output
    assert set((world.miner_home / "outbox").glob(f"bounty{posted}-*")) == before
    assert world.miner("vault", "budget", "private").output == spent
    world.miner("train", str(posted), "--dataset", "private", "--lr", "1", "--epochs", "1", "--seed", "4")  # smaller: fine
    _discard(_new_updates(world, {p for p in before if p.suffix == ".safetensors"}))


def test_changed_vault_file_is_refused(world: World, posted: int, tmp_path: Path) -> None:
    copy = tmp_path / "copy.csv"
    copy.write_bytes(world.shard_path.read_bytes())
    world.miner("vault", "add", "copy", str(copy), "--target", "digit")
    data = copy.read_bytes()
    copy.write_bytes(data + data.splitlines(keepends=True)[-1])  # one more row: the hash changes
    result = world.miner("train", str(posted), "--dataset", "copy", ok=False)
    assert result.exit_code == ExitStatus.VAULT
    assert "changed since it was added" in result.output
    world.miner("vault", "remove", "copy")


def test_unreachable_chain_exit_code(world: World) -> None:
    result = world.runner.invoke(cli, ["--home", str(world.miner_home), "--rpc", f"http://127.0.0.1:{free_port()}",
                                       "bounties"])
    assert result.exit_code == ExitStatus.CHAIN_UNREACHABLE
    assert result.output.startswith("error: no Ethereum node answers")


def test_a_bad_store_timeout_in_the_config_says_where(world: World, tmp_path: Path) -> None:
    home = tmp_path / "mine"
    world.run(home, "init", "--offline")
    config = json.loads((home / "config.json").read_text())
    (home / "config.json").write_text(json.dumps({**config, "store_timeout": "soon"}))
    result = world.run(home, "ipfs", "cat", "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG", ok=False)
    assert result.exit_code == ExitStatus.CONFIG, result.output
    assert "store_timeout" in result.output and "config.json" in result.output and "'soon'" in result.output


def test_missing_cid_is_a_store_error(world: World) -> None:
    result = world.miner("ipfs", "cat", "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG", ok=False)
    assert result.exit_code == ExitStatus.STORE, result.output


def test_ipfs_add_prints_kubo_cid(world: World, tmp_path: Path) -> None:
    hello = tmp_path / "hello.txt"
    hello.write_bytes(b"hello world\n")
    result = world.miner("ipfs", "add", "-n", str(hello))
    assert result.output.strip() == "added QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o hello.txt"
    cid = world.miner("ipfs", "add", "--cid-version", "1", str(hello)).output.split()[1]
    assert cid.startswith("bafk")
    assert world.miner("ipfs", "cat", cid).output == "hello world\n"


def test_audit_catches_an_owner_that_misreports_a_round(world: World, posted: int) -> None:
    world.owner("bounty", "reveal", str(posted))
    honest = world.miner("audit", str(posted))
    assert "0 mismatch(es)" in honest.output, honest.output
    checked = int(re.search(r"audited (\d+) items", honest.output).group(1))
    assert checked == world.sonar.bounty(posted).latest_version + 1 + world.sonar.bounty(posted).next_eval

    # a dishonest owner forfeits a good update as an "outlier" (and could use it anyway), taking back
    # the miner's vesting rewards too
    world.miner("train", str(posted), "--dataset", "private", "--epochs", "1", "--seed", "21")
    world.miner("submit", str(posted))
    owner = world.sonar
    owner.reset_nonce()
    bounty = owner.bounty(posted)
    vesting = owner.vesting(posted, dev_account(MINER).address).rewards
    assert vesting > 0
    owner.settle(posted, [Verdict(0, 4, False, clawback=True)], bounty.best_score)

    result = world.miner("audit", str(posted), ok=False)
    assert result.exit_code == ExitStatus.VALIDATION, result.output
    assert f"MISMATCH round #{bounty.next_eval}..#{bounty.next_eval}: submission #{bounty.next_eval}" in result.output
    assert "rejected [4]" in result.output
    assert f"reported clawback of {vesting} wei, replays to no clawback" in result.output
    # the miner's mine remembers it: `mine bounties` shows the owner's mismatches
    listing = world.miner("bounties", "--all")
    found = re.search(r"(\d+) in 1 audits", listing.output)
    assert found and int(found.group(1)) >= 1, listing.output


def test_a_retraction_is_published_named_and_replayed_by_the_audit(world: World) -> None:
    """The owner's client takes a code-9-flagged miner's weights back out of the next version, names
    the miner in the version record and prints it; evidence the replay does not find (an owner that
    invents a conviction to alter the weights) is an audit mismatch."""
    from mine.versions import load_version

    posted = _bounty_id(world.owner("bounty", "create", "--model", str(world.model_path), "--validation",
                                    "validation", "--reward", "0.5ether", "--target", "0.99", "--deadline", "2h",
                                    "--eval-window", "1h", "--stake", "0.01ether", "--auditable"))
    world.miner("train", str(posted), "--dataset", "private", "--epochs", "2", "--seed", "41")
    world.miner("submit", str(posted))
    # the owner's file says a miner was forfeited on input 3 after putting weights there
    path = world.owner_home / "owned" / f"{posted}.json"
    owned = json.loads(path.read_text())
    ghost, units, per_unit = "0x" + "de" * 20, 64, 32  # the MLP's first layer: 64 input columns of 32 weights
    applied = [0.0] * (units * per_unit)
    applied[3 * per_unit:4 * per_unit] = [1e-3] * per_unit
    owned["evidence"][ghost] = {"flagged_inputs": [3], "applied_sum": applied}
    path.write_text(json.dumps(owned))

    evaluated = world.owner("evaluate", str(posted))
    assert "accepted 1 of 1" in evaluated.output, evaluated.output
    assert f"takes back out what the earlier accepted updates of {ghost} put on the inputs" in evaluated.output
    version = load_version(world.sonar, _store(world), posted)
    assert version.version == 1 and version.record.round["retracted"] == [ghost]
    assert not any(json.loads(path.read_text())["evidence"][ghost]["applied_sum"])  # taken out once

    world.owner("bounty", "reveal", str(posted))
    audited = world.miner("audit", str(posted), ok=False)
    assert audited.exit_code == ExitStatus.VALIDATION, audited.output
    assert "version 1 weights" in audited.output and "not the aggregate of the accepted updates" in audited.output


def test_a_round_that_gains_nothing_waits_and_is_settled_with_the_next_updates(world: World) -> None:
    """With ``hold`` the owner leaves a round that makes no version unsettled (no transaction, nothing
    saved) and judges it again with the next update of the same version: both are settled in one
    round, which the audit replays as it was settled."""
    from mine import attacks
    from mine.home import MineHome
    from mine.model import make_update, read_update
    from mine.owner import OwnedBounty, Validation, settle_round
    from mine.vault import Vault
    from mine.versions import load_version

    posted = _bounty_id(world.owner("bounty", "create", "--model", str(world.model_path), "--validation",
                                    "validation", "--reward", "0.5ether", "--target", "0.99", "--deadline", "2h",
                                    "--eval-window", "1h", "--stake", "0.01ether", "--auditable"))
    store, home = _store(world), MineHome(world.owner_home)
    world.sonar.reset_nonce()  # the owner's CLI posted with the same account
    owned = OwnedBounty.load(home, posted)
    current = load_version(world.sonar, store, posted)
    val = Validation.from_vault(Vault(home), owned.validation, current.manifest)
    existing = set((world.miner_home / "outbox").glob("*.safetensors"))
    world.miner("train", str(posted), "--dataset", "private", "--epochs", "1", "--seed", "61", "--no-dp")
    (timid,) = _new_updates(world, existing)  # an honest direction, a step too small to change the score
    delta, meta = read_update(current.manifest, timid.read_bytes())
    small = attacks.scale_update(delta, 1e-6)
    timid.write_bytes(make_update(current.state, {k: current.state[k] + small[k] for k in small}, meta))
    world.miner("submit", str(posted), str(timid))

    result, current = settle_round(world.sonar, store, home, owned, val, current=current, hold=True)
    assert result is not None and (result.held, result.count, result.first) == (1, 0, 0), result
    bounty = world.sonar.bounty(posted)
    assert (bounty.next_eval, bounty.latest_version) == (0, 0)  # nothing settled on chain
    assert OwnedBounty.load(home, posted).rounds == []  # nor saved
    # the next update of the same version joins it: judged together, settled in one transaction
    world.miner("train", str(posted), "--dataset", "private", "--epochs", "1", "--seed", "62", "--no-dp")
    (real,) = _new_updates(world, existing | {timid})
    world.miner("submit", str(posted), str(real))
    result, current = settle_round(world.sonar, store, home, owned, val, current=current, hold=True)
    assert result is not None and (result.held, result.count, result.first, result.version) == (0, 2, 0, 1), result
    assert world.sonar.bounty(posted).next_eval == 2 and [v["index"] for v in result.verdicts] == [0, 1]
    assert result.verdicts[1]["share_bps"] > 0, result.verdicts

    world.owner("bounty", "reveal", str(posted))
    audited = world.miner("audit", str(posted))
    assert "0 mismatch(es)" in audited.output, audited.output


def test_rejected_update_shows_its_reason(world: World, posted: int, tmp_path: Path) -> None:
    # a boosted update (x20) is an outlier against its round: its stake is forfeited
    from mine import attacks
    from mine.model import make_update, read_update
    from mine.versions import load_version

    world.miner("train", str(posted), "--dataset", "private", "--epochs", "1", "--seed", "51")
    world.miner("train", str(posted), "--dataset", "private", "--epochs", "1", "--seed", "52")
    world.miner("train", str(posted), "--dataset", "private", "--epochs", "1", "--seed", "53")
    paths = sorted((world.miner_home / "outbox").glob(f"bounty{posted}-*.safetensors"), key=lambda p: p.stat().st_mtime)[-3:]
    current = load_version(world.sonar, _store(world), posted)
    delta, meta = read_update(current.manifest, paths[-1].read_bytes())
    boosted = attacks.scale_update(delta, 20.0)
    paths[-1].write_bytes(make_update(current.state, {k: current.state[k] + boosted[k] for k in boosted}, meta))
    for path in paths:
        world.miner("submit", str(posted), str(path))
    evaluated = world.owner("evaluate", str(posted))
    assert "rejected [4]" in evaluated.output and "stake forfeited" in evaluated.output, evaluated.output
    status = world.miner("status")
    assert "rejected" in status.output and "outlier" in status.output


def _store(world: World):  # noqa: ANN202 - a Store
    from mine.store import EmbeddedStore, IpfsNodeStore

    if world.store_spec.startswith("embedded:"):
        return EmbeddedStore(Path(world.store_spec.split(":", 1)[1]))
    return IpfsNodeStore(world.store_spec, timeout=10)


def test_close_refunds_the_rest_after_the_deadline(world: World, posted: int) -> None:
    early = world.owner("bounty", "close", str(posted), ok=False)
    assert early.exit_code == ExitStatus.CHAIN and "SonarDeadlineNotPassed" in early.output, early.output
    assert "close it after that" in early.output  # and when, in UTC
    bounty = world.sonar.bounty(posted)
    w3 = world.sonar.w3
    w3.provider.make_request("evm_increaseTime", [max(bounty.deadline, bounty.last_due) - world.sonar.now() + 1])
    w3.provider.make_request("evm_mine", [])
    credit_before = world.sonar.credits(dev_account(OWNER).address)
    closed = world.owner("bounty", "close", str(posted))
    assert re.search(r"paid [\d.]+ ETH, refunded [\d.]+ ETH, burned [\d.]+ ETH", closed.output), closed.output
    assert world.sonar.bounty(posted).escrow == 0
    # the owner gets the escrow left, never the forfeited stakes (burned)
    assert world.sonar.credits(dev_account(OWNER).address) - credit_before == bounty.escrow
    # (burned also counts the rewards a clawback burned earlier: the audit test's dishonest owner)
    assert world.sonar.bounty(posted).burned == bounty.burned + bounty.forfeit_pool


def test_accounts_are_encrypted_and_the_first_is_default(world: World, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "accounts-home"
    world.run(home, "init", "--offline")
    monkeypatch.setenv("MINE_PASSWORD", "correct horse")
    created = world.run(home, "account", "new").output.strip()
    key_file = tmp_path / "key.txt"
    key_file.write_text("0x" + "11" * 32 + "\n")
    imported = world.run(home, "account", "import", str(key_file)).output.strip()
    listed = world.run(home, "account", "list").output.split()
    assert sorted(listed) == sorted([created, imported])
    assert json.loads((home / "config.json").read_text())["account"] == created
    keystore = (home / "keystores" / f"{imported}.json").read_text()
    assert "11" * 32 not in keystore and "crypto" in keystore
    monkeypatch.setenv("MINE_PASSWORD", "wrong")
    base = ["--home", str(home), "--rpc", world.rpc, "--sonar", world.sonar.address]
    result = world.runner.invoke(cli, [*base, "bounty", "close", "1"])  # signs: unlocks the key first
    assert result.exit_code == ExitStatus.CONFIG and "wrong password" in result.output
    # reading needs no key: nothing to withdraw is said without unlocking (and without web3)
    result = world.runner.invoke(cli, [*base, "withdraw"])
    assert result.exit_code == 0 and "nothing to withdraw" in result.output, result.output


def test_submit_after_the_deadline_names_the_contract_error(world: World, tmp_path: Path) -> None:
    posted = _bounty_id(world.owner("bounty", "create", "--model", str(world.model_path), "--validation",
                                    "validation", "--reward", "0.1ether", "--target", "0.99", "--deadline", "10m",
                                    "--eval-window", "1h"))
    world.miner("train", str(posted), "--dataset", "private", "--epochs", "1")
    w3 = world.sonar.w3
    w3.provider.make_request("evm_increaseTime", [3600])
    w3.provider.make_request("evm_mine", [])
    result = world.miner("submit", str(posted), ok=False)
    assert result.exit_code == ExitStatus.CHAIN
    assert "SonarDeadlinePassed" in result.output
    # the journal gives the update up (nothing was submitted), so `status` is not stuck on it
    journal = json.loads((world.miner_home / "journal.json").read_text())
    assert [e["state"] for e in journal if e["bounty"] == posted] == ["abandoned"]
    world.miner("status")


def test_model_template_is_a_valid_normalized_manifest(world: World) -> None:
    from mine.model import Manifest

    plain = Manifest.from_json(world.owner("model", "template", "digits").output.encode())
    assert plain.normalization is None and len(plain.features) == 64
    normalized = Manifest.from_json(
        world.owner("model", "template", "digits", "--normalize-from", "validation").output.encode())
    assert normalized.normalization is not None and normalized.features == plain.features
    ce = Manifest.from_json(world.owner("model", "template", "digits", "--metric", "cross_entropy").output.encode())
    assert (ce.metric, ce.higher_is_better, ce.layers) == ("cross_entropy", False, plain.layers)
    refused = world.owner("model", "template", "diabetes", "--metric", "accuracy", ok=False)
    assert refused.exit_code != 0 and "--metric" in refused.output and "'mse'" in refused.output



def test_verdict_line_tells_the_stake_once() -> None:
    v = {"index": 3, "miner": "0xf8e1fd2BDACBc1aa73159f49AE8b8ee7d88228d3", "share_bps": 0, "reason_code": 3,
         "refund": True, "reason": "subgroup '9' got worse; it points with its round (stake returned)"}
    assert verdict_line(v) == ("#3 0xf8e1fd2B…: rejected [3] subgroup '9' got worse; it points with its round "
                               "(stake returned)")
    assert verdict_line({**v, "reason": "norm above the round's limit", "refund": False}).endswith(
        "limit (stake forfeited)")
    assert verdict_line({**v, "share_bps": 1234}) == "#3 0xf8e1fd2B…: accepted, share 12.34%"
