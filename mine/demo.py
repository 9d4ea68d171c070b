"""`mine demo`: the whole marketplace on one machine, with real parts.

One model owner (holding a validation split) posts a bounty on a real chain (anvil, or `--rpc`),
N miners each keep a non-IID shard (Dirichlet label split) in their own mine and vault, K of them
attack, and for R rounds every miner trains the same latest model version locally and submits its
update (sealed to the owner, one transaction with the stake); the owner then judges the round's
updates together and settles the round in one transaction. Everything a miner sends is a sealed
update and transactions; shards stay in the miners' folders. After close every miner withdraws
(nothing to withdraw is fine) and the bounty, revealed for audit, is replayed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mine import attacks, datasets
from mine import dp as dp_module
from mine.chain import MAX_ROUND, SonarClient, connect, recorded_deployment
from mine.devnet import anvil, dev_account
from mine.evaluate import evaluate, score_from_chain
from mine.home import Config, MineHome
from mine.ledger import PrivacyLedger
from mine.miner import submit_many, train_update
from mine.model import build_model, default_manifest, with_normalization
from mine.owner import RoundResult, Validation, audit, create_bounty, fetch_audit_bundle, reveal_audit, settle_round
from mine.overview import withdraw_credits
from mine.report import write_report
from mine.round_policy import RoundPolicy
from mine.store import Store, cid_from_chain, open_store
from mine.train import train
from mine.vault import Vault
from mine.versions import load_version

ETHER = 10**18
VALIDATION_FRACTION = 0.25
DIRICHLET_ALPHA = 1.0
# local training for the linear diabetes model: plain SGD converges on raw targets, Adam at 0.05 does not
TRAINING: dict[str, dict[str, Any]] = {"diabetes": {"epochs": 20, "lr": 0.02, "batch_size": 32, "optimizer": "sgd"}}
SHORT_REASONS = {1: "structure", 2: "no gain", 3: "subgroup", 4: "outlier", 5: "unreadable", 6: "not theirs",
                 7: "epsilon", 8: "negative", 9: "concentrated"}
TARGETS = {"digits": 0.99, "breast_cancer": 0.995, "diabetes": 2600.0}
#: Targets of a bounty scored by validation cross-entropy (``--metric cross_entropy``), in nats.
CROSS_ENTROPY_TARGETS = {"digits": 0.05, "breast_cancer": 0.05}
#: The demo owner's metric where it is not the task's default. Breast cancer's 143 validation rows
#: make one row a 0.7-point accuracy step: rounds that lower the loss tie on accuracy and make no
#: version (README, "Models").
DEMO_METRICS = {"breast_cancer": "cross_entropy"}
#: The per-update ε of the demo's bounties (see :attr:`DemoSettings.epsilon`).
DEMO_EPSILON = 8.0
POLICY_SETTINGS: dict[str, dict[str, Any]] = {
    "digits": {"subgroup_tolerance": 0.2},
    "breast_cancer": {"subgroup_tolerance": 0.2},
    "diabetes": {},
}


@dataclass
class DemoSettings:
    dataset: str = "digits"
    model: str = "mlp"  # "cnn": digits as 1x8x8 images through a small CNN (mine.templates.default_manifest)
    miners: int = 8
    malicious: int = 2
    attack: str = "label_flip"
    rounds: int = 5
    seed: int = 0
    out: Path = Path("demo-out")
    rpc: str | None = None
    ipfs_api: str | None = None
    sonar: str | None = None
    reward_wei: int = 10 * ETHER
    stake_wei: int = ETHER // 100
    dp: bool = True  # miners train with DP-SGD (settings: the manifest's training.dp, else mine.dp's default)
    #: per-update ε the demo's bounty asks for in its manifest (``training.dp``); ``None``: mine.dp's
    #: default (4). 8 (δ = min(1e-5, 1/n)) is the literature's bar against reconstruction; at 4 the
    #: market ends 6–7 points below the non-private run, at 8 within 5 (README, "What it costs").
    epsilon: float | None = DEMO_EPSILON
    #: the bounty's metric (``None``: :data:`DEMO_METRICS`, else the task's default, accuracy or MSE);
    #: ``"cross_entropy"`` scores a classifier by its mean validation loss, which a small validation
    #: set still resolves
    metric: str | None = None

    def bounty_metric(self) -> str | None:
        """The metric the demo's bounty names (``None``: the manifest's default)."""
        return self.metric or DEMO_METRICS.get(self.dataset)

    def target(self) -> float:
        """The bounty's target score for this dataset and metric."""
        ce = self.bounty_metric() == "cross_entropy"
        return CROSS_ENTROPY_TARGETS[self.dataset] if ce else TARGETS[self.dataset]


class TimedStore:
    """A store that adds up the seconds spent in it (for the demo's time split)."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.seconds = 0.0

    def add(self, data: bytes, **kwargs: Any) -> str:
        started = time.perf_counter()
        try:
            return self.inner.add(data, **kwargs)
        finally:
            self.seconds += time.perf_counter() - started

    def cat(self, cid: str, **kwargs: Any) -> bytes:
        started = time.perf_counter()
        try:
            return self.inner.cat(cid, **kwargs)
        finally:
            self.seconds += time.perf_counter() - started

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@dataclass
class MinerState:
    name: str
    honest: bool
    home: MineHome
    client: SonarClient


@contextlib.contextmanager
def _chain(settings: DemoSettings) -> Iterator[str]:
    if settings.rpc:
        yield settings.rpc
    else:
        with anvil(accounts=max(10, settings.miners + 2)) as url:
            yield url


def _attack_transform(attack: str, seed: int) -> Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None:
    if attack == "noise":
        return lambda delta: attacks.noise_update(delta, scale=1.0, seed=seed)
    if attack == "scale":
        return lambda delta: attacks.scale_update(delta, factor=20.0)
    return None


def _close_after_deadline(owner: SonarClient, store: Store, home: MineHome, owned: Any, val: Validation) -> int:
    """Move a local chain's clock past the deadline, reveal the audit bundle, close; returns the refund."""
    bounty = owner.bounty(owned.bounty_id)
    if bounty.status.name == "CLOSED":
        return 0
    wait = max(bounty.deadline, bounty.last_due) - owner.now() + 1
    try:
        owner.w3.provider.make_request("evm_increaseTime", [max(wait, 1)])
        owner.w3.provider.make_request("evm_mine", [])
    except (OSError, ValueError):
        return 0
    if not bounty.audit_revealed:
        reveal_audit(owner, store, home, owned, val)
    receipt = owner.close(owned.bounty_id)
    (event,) = owner.receipt_events(receipt, "BountyClosed")
    if owner.credits(owner.account.address) > 0:
        owner.withdraw()
    return int(event["args"]["refunded"])


def _centralized_score(manifest: Any, X: np.ndarray, y: np.ndarray, val: Validation, *, epochs: int, seed: int) -> float:
    model = build_model(manifest, seed=seed)
    train(model, X, y, manifest, epochs=epochs, seed=seed)
    return evaluate(model, val.X, val.y, manifest).score


def run_demo(settings: DemoSettings, *, console: Console, progress_console: Console) -> dict[str, Any]:
    """Run the scenario, print the tables, write summary.json and report.html; returns the summary."""
    t_start = time.perf_counter()
    out = settings.out
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("homes", "store"):  # a previous run's mines; the demo owns these folders
        shutil.rmtree(out / stale, ignore_errors=True)
    rng = np.random.default_rng(settings.seed)
    torch.manual_seed(settings.seed)
    torch.set_num_threads(1)  # the models are small: one thread beats two that contend

    # --- data: the owner's validation split and the miners' private shards ---------------------
    data = datasets.load(settings.dataset)
    split = datasets.train_validation_split(
        data.X, data.y, validation_fraction=VALIDATION_FRACTION, seed=settings.seed, task=data.task
    )
    shards = datasets.dirichlet_shards(
        split.y_train, settings.miners, alpha=DIRICHLET_ALPHA, seed=settings.seed, min_size=10, task=data.task
    )
    malicious = set(rng.choice(settings.miners, size=settings.malicious, replace=False).tolist())
    manifest = with_normalization(default_manifest(settings.dataset, settings.model), split.X_val)
    if settings.bounty_metric() is not None:
        manifest = dataclasses.replace(manifest, metric=settings.bounty_metric())
    if settings.dataset in TRAINING:
        manifest = dataclasses.replace(manifest, training=TRAINING[settings.dataset])
    if settings.dp and settings.epsilon is not None:
        # the owner's bounty asks for this ε per update (miners may always choose less)
        manifest = dataclasses.replace(manifest, training={**manifest.training,
                                                           "dp": {"target_epsilon": settings.epsilon}})
    num_classes = manifest.num_classes
    trigger = attacks.make_trigger(split.X_train) if settings.attack == "backdoor" else None
    target_label = 0

    timings = {"train": 0.0, "chain": 0.0, "store": 0.0, "evaluate": 0.0}
    with _chain(settings) as rpc:
        w3 = connect(rpc)
        chain_id = int(w3.eth.chain_id)
        owner_account = dev_account(0)
        address = settings.sonar or recorded_deployment(chain_id)
        if address and w3.eth.get_code(w3.to_checksum_address(address)) not in (b"", b"\x00"):
            owner_client = SonarClient(w3, address, owner_account)
        else:
            owner_client = SonarClient.deploy(w3, owner_account)
        store = TimedStore(open_store(settings.ipfs_api, out / "store"))

        owner_home = MineHome(out / "homes" / "owner")
        owner_home.init(Config(rpc=rpc, chain_id=chain_id, sonar=owner_client.address, store=settings.ipfs_api or "embedded"))
        val_path = owner_home.root / "validation.csv"
        datasets.write_csv(val_path, split.X_val, split.y_val, data.feature_names, data.target_name)
        Vault(owner_home).add("validation", val_path, target=data.target_name)
        X_val, y_val, cols = Vault(owner_home).load("validation")
        val = Validation.from_file(val_path, X_val, y_val, cols, manifest)

        initial_state = build_model(manifest, seed=settings.seed).state_dict()
        if manifest.task == "regression":
            # like the 2017 Sonar demo's owner, start from a baseline: predict the mean target
            last_bias = [k for k in initial_state if k.endswith(".bias")][-1]
            initial_state[last_bias] = torch.full_like(initial_state[last_bias], float(np.mean(split.y_val)))
        # a DP bounty caps the ε it asks for: an update with less noise is refused (code 7), and
        # the backdoor test (code 9) applies to every update it takes
        max_epsilon = dp_module.default_settings(manifest).target_epsilon if settings.dp else None
        owned, model_cid, initial_score = create_bounty(
            owner_client, store, owner_home, manifest, initial_state, val, validation_name="validation",
            reward=settings.reward_wei, target=settings.target(), deadline=owner_client.now() + 86400,
            eval_window=3600, stake=settings.stake_wei, policy_settings=POLICY_SETTINGS[settings.dataset],
            auditable=True,
            max_epsilon=max_epsilon,
        )
        bounty_id = owned.bounty_id

        miners: list[MinerState] = []
        for i in range(settings.miners):
            home = MineHome(out / "homes" / f"miner{i}")
            home.init(Config(rpc=rpc, chain_id=chain_id, sonar=owner_client.address, store="embedded"))
            idx = shards[i]
            X_m, y_m = split.X_train[idx], split.y_train[idx]
            if i in malicious and settings.attack == "label_flip":
                y_m = attacks.label_flip(y_m, num_classes=num_classes, seed=settings.seed + i)
            if i in malicious and settings.attack == "backdoor":
                X_m, y_m = attacks.backdoor(X_m, y_m, trigger=trigger, target_label=target_label, fraction=0.5,
                                            seed=settings.seed + i)
            path = home.root / "data.csv"
            datasets.write_csv(path, X_m, y_m, data.feature_names, data.target_name)
            Vault(home).add("private", path, target=data.target_name)
            if settings.dp:
                # the miner's budget is set to exactly what its rounds need (announced below)
                PrivacyLedger(home).set_budget("private", _budget_for(manifest, len(X_m), settings.rounds),
                                               rows=len(X_m))
            client = SonarClient(w3, owner_client.address, dev_account(i + 1))
            miners.append(MinerState(f"miner{i}", i not in malicious, home, client))

        console.print(
            f"[bold]Sonar demo[/]: {settings.dataset}, {settings.miners} miners ({settings.malicious} malicious: "
            f"{settings.attack}), {settings.rounds} rounds, {_privacy_label(manifest) if settings.dp else 'no DP'}; bounty {bounty_id} with {settings.reward_wei / ETHER:g} ETH, "
            f"model {model_cid}, initial score {initial_score:.4f}"
        )
        untested = RoundPolicy(**POLICY_SETTINGS[settings.dataset], max_epsilon=max_epsilon).untested_for_backdoors(
            manifest)
        if untested:
            console.print(f"note: {untested}", markup=False)
        if settings.dp:
            budgets = [PrivacyLedger(m.home).status("private").budget for m in miners]
            console.print(f"privacy: each miner trains through its vault's privacy ledger; its budget is set to what "
                          f"{settings.rounds} DP updates compose to (ε {min(budgets):.2f}–{max(budgets):.2f}, "
                          f"RDP accountant)")
        epsilons: dict[tuple[str, int], float | None] = {}
        current = load_version(owner_client, store, bounty_id)
        all_rounds: list[tuple[int, RoundResult]] = []
        submitted_in: dict[int, int] = {}  # submission index -> the round it was trained and sent in
        by_address = {m.client.account.address: m for m in miners}
        bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                       console=progress_console, disable=not progress_console.is_terminal, transient=True)
        with bar:
            task = bar.add_task("rounds", total=settings.rounds * settings.miners)
            for rnd in range(settings.rounds):
                if owner_client.bounty(bounty_id).status.name != "OPEN":
                    break  # target reached: the bounty takes no more updates
                base = current  # every miner of the round trains from the same latest version
                trained = []
                for i, m in enumerate(miners):
                    bar.update(task, description=f"round {rnd + 1}: {m.name} training")
                    X_m, y_m, cols_m = Vault(m.home).load("private")
                    t0 = time.perf_counter()
                    transform = _attack_transform(settings.attack, settings.seed + 1000 * rnd + i) if not m.honest else None
                    update = train_update(m.home, m.client, store, bounty_id, X_m, y_m, cols_m,
                                          seed=settings.seed + 1000 * rnd + i, transform=transform, base=base,
                                          no_dp=not settings.dp, dataset="private")
                    epsilons[(m.name, rnd + 1)] = update.dp.epsilon if update.dp is not None else None
                    timings["train"] += time.perf_counter() - t0
                    trained.append((m.home, m.client, update.path))
                    bar.advance(task)
                # the round's submissions go out back to back (one per account) and are awaited together
                bar.update(task, description=f"round {rnd + 1}: submitting")
                first = owner_client.bounty(bounty_id).submissions
                submit_many(trained, store, bounty_id)
                queued = owner_client.bounty(bounty_id)
                submitted_in.update({index: rnd + 1 for index in range(first, queued.submissions)})
                # the owner settles the round: every update judged together, one transaction; a round
                # that makes no version waits for the next round's updates of the same version while
                # both fit in one settlement (the last round always settles)
                hold = rnd + 1 < settings.rounds and queued.submissions - queued.next_eval + len(miners) <= MAX_ROUND
                bar.update(task, description=f"round {rnd + 1}: owner settling")
                t0 = time.perf_counter()
                chain_before, store_before = owner_client.chain_seconds, store.seconds
                while True:
                    result, current = settle_round(owner_client, store, owner_home, owned, val, current=current,
                                                   hold=hold)
                    if result is None or result.count == 0:
                        if result is not None and result.held:
                            console.print(f"round {rnd + 1}: no gain from {result.held} update(s); they wait for the "
                                          "next round's updates of the same version")
                        break
                    all_rounds.append((rnd + 1, result))
                timings["evaluate"] += (time.perf_counter() - t0) - (owner_client.chain_seconds - chain_before) \
                    - (store.seconds - store_before)

        # --- settle: past the deadline the owner reveals the audit bundle and closes ------------
        closed = _close_after_deadline(owner_client, store, owner_home, owned, val)
        final_bounty = owner_client.bounty(bounty_id)
        for m in miners:  # releases what vested in the ended bounty, then withdraws (only who has credit)
            withdraw_credits(m.client)
        versions = [owner_client.model_version(bounty_id, v) for v in range(final_bounty.latest_version + 1)]
        # anyone can now replay the bounty from chain + store + the revealed audit bundle
        t0 = time.perf_counter()
        _, secret_key, _ = fetch_audit_bundle(owner_client, store, bounty_id)
        audited, findings = audit(owner_client, store, bounty_id, val, secret_key)
        timings["audit"] = time.perf_counter() - t0
        model_versions = [{"version": v.version, "cid": cid_from_chain(v.digest, v.codec),
                           "score": score_from_chain(v.score)} for v in versions]
        timings["chain"] = owner_client.chain_seconds + sum(m.client.chain_seconds for m in miners)
        timings["store"] = store.seconds

        # --- the page: a screenshot of an honest miner's `mine ui` at the end (demo-out/ui.png) ----
        from mine.ui.shot import try_demo_screenshot

        shown = next((m for m in miners if m.honest), miners[0])
        console.print(try_demo_screenshot(shown.home, shown.client, store, out / "ui.png"))

    # --- reference and summary ---------------------------------------------------------------
    union = np.concatenate(shards)
    epochs = int(manifest.training["epochs"]) * settings.rounds
    X_train_all = datasets.select_features(split.X_train, data.feature_names, list(manifest.features))
    centralized = _centralized_score(manifest, X_train_all[union], split.y_train[union], val, epochs=epochs,
                                     seed=settings.seed)
    final_score = model_versions[-1]["score"]
    submissions = []
    for rnd, result in all_rounds:
        for v in result.verdicts:
            m = by_address[v["miner"]]
            accepted = v["share_bps"] > 0
            returned = accepted or bool(v["refund"])
            sent = submitted_in.get(v["index"], rnd)
            submissions.append({
                "miner": m.name, "honest": m.honest, "round": sent, "settled_round": rnd, "index": v["index"],
                "accepted": accepted,
                "reason": v["reason"], "reason_code": v["reason_code"], "share_bps": v["share_bps"],
                "score_before": result.score_before, "score_after": result.score_after,
                "version": result.version if accepted else None,
                "reward_wei": int(v["reward"]), "stake_wei": settings.stake_wei, "stake_returned": returned,
                "clawed_back_wei": int(v["clawed_back"]),
                "norm": v["norm"], "contribution": v["contribution"], "alignment": v.get("alignment"),
                "harm": v.get("harm"), "similarity": v.get("similarity"),
                "epsilon": epsilons.get((m.name, sent)),
            })
    per_miner: dict[str, dict[str, Any]] = {}
    for m in miners:
        mine_subs = [s for s in submissions if s["miner"] == m.name]
        reward = sum(s["reward_wei"] for s in mine_subs)
        clawed = sum(s["clawed_back_wei"] for s in mine_subs)
        forfeited = sum(s["stake_wei"] for s in mine_subs if not s["stake_returned"])
        per_miner[m.name] = {"honest": m.honest, "submitted": len(mine_subs),
                             "accepted": sum(s["accepted"] for s in mine_subs), "reward_wei": reward,
                             "clawed_back_wei": clawed, "forfeited_wei": forfeited,
                             "net_wei": reward - clawed - forfeited,
                             "epsilon_spent": _epsilon_spent(m.home) if settings.dp else None}
    paid = int(final_bounty.paid)
    names = {a.lower(): m.name for a, m in by_address.items()}
    timings["total"] = time.perf_counter() - t_start
    summary: dict[str, Any] = {
        "dataset": settings.dataset, "model": manifest.name, "metric": manifest.metric, "attack": settings.attack,
        "miners": settings.miners, "malicious": settings.malicious, "malicious_miners": sorted(f"miner{i}" for i in malicious),
        "rounds": settings.rounds, "seed": settings.seed, "bounty_id": bounty_id, "dp": settings.dp,
        "initial_score": initial_score, "final_score": final_score, "centralized_score": centralized,
        "target_score": settings.target(),
        "bounty_wei": settings.reward_wei, "paid_wei": paid, "refunded_wei": closed,
        "escrow_left_wei": int(final_bounty.escrow),
        "submissions": submissions, "miners_summary": per_miner, "model_versions": model_versions,
        "forfeit_burned_wei": int(final_bounty.burned),
        "retractions": [{"round": rnd, "version": result.version,
                         "miners": [names.get(a.lower(), a) for a in result.retracted]}
                        for rnd, result in all_rounds if result.retracted],
        "malicious_accepted": sum(1 for s in submissions if not s["honest"] and s["accepted"]),
        "malicious_submitted": sum(1 for s in submissions if not s["honest"]),
        "audit": {"scores_replayed": audited, "mismatches": [str(f) for f in findings]},
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
    }
    if manifest.task == "classification" and manifest.metric != "accuracy":
        accuracy = dataclasses.replace(manifest, metric="accuracy")
        model = build_model(accuracy)
        model.load_state_dict(current.state)
        summary["final_accuracy"] = evaluate(model, val.X, val.y, accuracy).score
    if settings.attack == "backdoor" and trigger is not None:
        model = build_model(manifest)
        model.load_state_dict(current.state)
        summary["backdoor_success"] = attacks.backdoor_success(model, val.X, val.y, manifest, trigger=trigger,
                                                               target_label=target_label)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    write_report(summary, out / "report.html")
    _print_tables(summary, console)
    return summary


def _budget_for(manifest: Any, rows: int, rounds: int) -> float:
    """The ε that ``rounds`` default DP updates on ``rows`` examples compose to (RDP), rounded up a little."""
    from mine.dp import composed_epsilon, default_settings

    record = default_settings(manifest).resolve(rows)
    return math.ceil(composed_epsilon([record.history] * rounds, record.delta) * 100 + 1) / 100


def _privacy_label(manifest: Any) -> str:
    from mine.dp import default_settings

    dp = default_settings(manifest)
    return f"DP-SGD (ε {dp.target_epsilon:g} per update)" if dp.target_epsilon is not None else "DP-SGD"


def _epsilon_spent(home: MineHome) -> float:
    """The miner's dataset ε as its privacy ledger composes it over every update trained on it."""
    return PrivacyLedger(home).status("private").spent


def _print_tables(summary: dict[str, Any], console: Console) -> None:
    rejected: dict[str, dict[str, int]] = {}
    for s in summary["submissions"]:
        if not s["accepted"]:
            reason = SHORT_REASONS.get(s["reason_code"], str(s["reason_code"]))
            reason += "" if s["stake_returned"] else " (forfeit)"
            rejected.setdefault(s["miner"], {})[reason] = rejected.setdefault(s["miner"], {}).get(reason, 0) + 1
    table = Table("miner", "honest", "submitted", "accepted", "rejected (reasons)", "reward (ETH)", "clawed back (ETH)",
                  "forfeited (ETH)", "net (ETH)", "ε spent", title="Miners")
    for name in sorted(summary["miners_summary"], key=lambda n: int(n[5:])):
        row = summary["miners_summary"][name]
        reasons = ", ".join(f"{k} ×{v}" for k, v in rejected.get(name, {}).items()) or "-"
        net = row["net_wei"] / ETHER
        table.add_row(name, "yes" if row["honest"] else "[red]no[/]", str(row["submitted"]), str(row["accepted"]),
                      f"{row['submitted'] - row['accepted']} ({reasons})", f"{row['reward_wei'] / ETHER:.4f}",
                      f"{row.get('clawed_back_wei', 0) / ETHER:.4f}", f"{row['forfeited_wei'] / ETHER:.4f}",
                      f"[{'green' if net >= 0 else 'red'}]{net:+.4f}[/]",
                      "off" if row.get("epsilon_spent") is None else f"{row['epsilon_spent']:.2f}")
    console.print(table)
    versions = Table("version", "score", "cid", title=f"Model versions ({summary['metric']})")
    for v in summary["model_versions"]:
        versions.add_row(str(v["version"]), f"{v['score']:.4f}", v["cid"])
    console.print(versions)
    t = summary["timings_s"]
    console.print(
        f"initial {summary['initial_score']:.4f} → final {summary['final_score']:.4f} "
        f"(centralized reference {summary['centralized_score']:.4f})"
        + (f"; final accuracy {summary['final_accuracy']:.4f}" if "final_accuracy" in summary else "")
        + f"; malicious accepted "
        f"{summary['malicious_accepted']} of {summary['malicious_submitted']}"
        + (f"; backdoor success {summary['backdoor_success']:.1%}" if "backdoor_success" in summary else "")
    )
    console.print(
        f"audit: {summary['audit']['scores_replayed']} reported scores replayed from chain + store, "
        f"{len(summary['audit']['mismatches'])} mismatches"
    )
    console.print(
        f"bounty {summary['bounty_wei'] / ETHER:g} ETH: paid {summary['paid_wei'] / ETHER:.4f}, "
        f"refunded {summary['refunded_wei'] / ETHER:.4f}; forfeited stakes went to later contributors, "
        f"{summary['forfeit_burned_wei'] / ETHER:.4f} burned at close (never to the owner)"
    )
    console.print(
        f"time {t['total']:.1f} s: training {t['train']:.1f} s, chain {t['chain']:.1f} s, "
        f"store {t['store']:.1f} s, evaluation {t['evaluate']:.1f} s"
    )
