"""The default demo's market without chain or store, attackers included: what a DP setting ends at.

`python -m bench.dp_demo [--seeds 3] [--repeats 3] [--dataset digits] [--model mlp] [--out F.json] --config JSON ...`

A replica of `mine demo` (same split, Dirichlet shards, the same two attacking miners — label flip,
backdoor, or the demo's scale / noise transforms of the trained update (``--attack``) —, the demo's manifest with ``training.dp`` = ``{"target_epsilon": 8}`` under the config's DP settings):
every round each miner trains the current version with :func:`mine.dp.train_dp` (CSPRNG noise, as
in the demo, so repeats of a seed differ) and the owner judges the round with the demo's
:class:`mine.policy.RoundPolicy` (``mine.demo.POLICY_SETTINGS`` plus the config's ``policy``).
It reproduces the demo's verdicts (seed 0 without DP: the same versions and rejections) in about
a second a run. A row: the final validation score (mean, per seed, every run), the malicious
updates accepted per run, honest forfeits (and their reason codes), the ε of one update, and each
run's modelled pay (:func:`payouts`): the best attacker's net and the worst honest miner's.

A config is JSON: ``mine.dp.DPSettings`` fields (over the demo's), and optionally

* ``"policy": {...}`` — RoundPolicy settings; ``"no_dp": true`` — plain training (the manifest's);
* model: ``"hidden": [widths]`` (MLP hidden widths, ``[]`` = linear), ``"layers": [...]`` (any
  manifest layers), ``"std_floor": f`` (normalization std at least f x the median std);
* owner, from public information only: ``"heavy_ball": b`` (also try the judged version plus
  b x (current - parent version), keep the better on validation), ``"polyak": true`` (also try the
  mean of the judged, current and parent versions), ``"shrink": c`` (each coordinate of the
  aggregate shrunk by ``max(0, 1 - c var / agg^2)``, var the round's pooled spread);
* owner: ``"hold": false`` — settle a round that makes no version at once (the demo's owner holds
  it: its updates wait and are judged with the next round's, the same base version, up to 32); ``"metric": m`` — the bounty's
  metric (default: the demo's, :data:`mine.demo.DEMO_METRICS`);
* miner post-processing of its DP output: ``"rank": r`` (each weight matrix's delta truncated to
  rank r), ``"freeze_after": k`` (from round k only the last Linear layer's delta is sent).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

import mine.policy as policy_module
from mine import attacks, datasets, dp
from mine.demo import (CROSS_ENTROPY_TARGETS, DEMO_EPSILON, DEMO_METRICS, DIRICHLET_ALPHA, POLICY_SETTINGS, TARGETS,
                       TRAINING, VALIDATION_FRACTION, _attack_transform)
from mine.contract import BPS, MAX_SHARE_BPS
from mine.evaluate import evaluate
from mine.model import build_model, default_manifest, make_update, with_normalization
from mine.policy import RoundItem, RoundPolicy
from mine.train import train

_AGGREGATE = policy_module.aggregate


def _set_shrink(c: float) -> None:
    """The round policy's aggregate with a per-coordinate garrote (c = 0: the policy's own)."""
    def agg(deltas: Any, weights: Any) -> dict[str, torch.Tensor]:
        out = _AGGREGATE(deltas, weights)
        k = len(deltas)
        if not c or k < 3:
            return out
        for key in out:
            a = torch.stack([float(w) * d[key].detach().to(torch.float64) for d, w in zip(deltas, weights)])
            var = (k / (k - 1)) * ((a - a.mean(0)) ** 2).sum(0).mean()  # pooled variance of the sum
            out[key] = out[key] * (1 - c * var / out[key].pow(2).clamp_min(1e-30)).clamp_min(0)
        return out
    policy_module.aggregate = agg if c else _AGGREGATE


def _score(manifest: Any, state: dict[str, torch.Tensor], X: np.ndarray, y: np.ndarray) -> float:
    net = build_model(manifest)
    net.load_state_dict(state)
    return evaluate(net, X, y, manifest).score


def run(dataset: str, model: str, seed: int, config: dict[str, Any], rounds: int = 5, miners: int = 8,
        malicious: int = 2, attack: str = "label_flip") -> dict[str, Any]:
    config = dict(config)
    policy_over = config.pop("policy", {})
    no_dp = config.pop("no_dp", False)
    hidden, layers, std_floor = config.pop("hidden", None), config.pop("layers", None), config.pop("std_floor", None)
    heavy, polyak = config.pop("heavy_ball", 0.0), config.pop("polyak", False)
    rank, freeze_after = config.pop("rank", None), config.pop("freeze_after", None)
    hold = config.pop("hold", True)
    metric = config.pop("metric", DEMO_METRICS.get(dataset))
    _set_shrink(config.pop("shrink", 0.0))
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    data = datasets.load(dataset)
    split = datasets.train_validation_split(data.X, data.y, validation_fraction=VALIDATION_FRACTION, seed=seed,
                                            task=data.task)
    shards = datasets.dirichlet_shards(split.y_train, miners, alpha=DIRICHLET_ALPHA, seed=seed, min_size=10,
                                       task=data.task)
    bad = set(rng.choice(miners, size=malicious, replace=False).tolist())
    manifest = with_normalization(default_manifest(dataset, model), split.X_val)
    if std_floor is not None:
        std = np.asarray(manifest.normalization["std"])
        floor = std_floor * float(np.median(std))
        manifest = dataclasses.replace(manifest, normalization={
            "mean": manifest.normalization["mean"], "std": [float(max(v, floor)) for v in std]})
    if hidden is not None:
        from mine.templates import _mlp
        layers = _mlp([len(manifest.features), *hidden, manifest.num_classes or 1])
    if layers is not None:
        manifest = dataclasses.replace(manifest, layers=layers)
    if dataset in TRAINING:
        manifest = dataclasses.replace(manifest, training=TRAINING[dataset])
    if metric is not None:
        manifest = dataclasses.replace(manifest, metric=metric)
    manifest = dataclasses.replace(manifest, training={**manifest.training,
                                                       "dp": {"target_epsilon": DEMO_EPSILON, **config}})
    settings = dp.default_settings(manifest)
    state = build_model(manifest, seed=seed).state_dict()
    if manifest.task == "regression":
        last_bias = [k for k in state if k.endswith(".bias")][-1]
        state[last_bias] = torch.full_like(state[last_bias], float(np.mean(split.y_val)))
    policy = RoundPolicy(**{**POLICY_SETTINGS[dataset], **policy_over})
    X_val = datasets.select_features(split.X_val, data.feature_names, list(manifest.features))
    X_tr = datasets.select_features(split.X_train, data.feature_names, list(manifest.features))
    shard_data = []
    trigger = attacks.make_trigger(split.X_train) if attack == "backdoor" else None
    for i in range(miners):
        X_m, y_m = X_tr[shards[i]].astype(np.float32), split.y_train[shards[i]]
        if i in bad and attack == "label_flip":
            y_m = attacks.label_flip(y_m, num_classes=manifest.num_classes, seed=seed + i)
        if i in bad and attack == "backdoor":
            X_m, y_m = attacks.backdoor(X_m, y_m, trigger=trigger, target_label=0, fraction=0.5, seed=seed + i)
            X_m = X_m.astype(np.float32)
        shard_data.append((X_m, y_m))
    history: list[float] = []
    suspects: Counter[str] = Counter()
    evidence: dict[str, Any] = {}
    parent: dict[str, torch.Tensor] | None = None
    version, eps, t_train, bad_accepted, honest_forfeits, honest_in_version = 0, 0.0, 0.0, 0, 0, 0
    bad_forfeited: set[int] = set()
    curve = []
    held: list[RoundItem] = []
    forfeit_reasons: Counter[int] = Counter()
    settled: list[Any] = []
    for rnd in range(rounds):
        items = list(held)
        for i, (X_m, y_m) in enumerate(shard_data):
            net = build_model(manifest)
            net.load_state_dict(state)
            s = seed + 1000 * rnd + i  # the demo's training seed
            t0 = time.perf_counter()
            if no_dp:
                tr = manifest.training
                train(net, X_m, y_m, manifest, epochs=int(tr["epochs"]), lr=float(tr["lr"]),
                      batch_size=int(tr["batch_size"]), seed=s)
                meta_dp = "off"
            else:
                out = dp.train_dp(net, X_m, y_m, manifest, settings, seed=s)
                eps, meta_dp = max(eps, out.epsilon), out.record.to_json()
                with torch.no_grad():
                    keys = list(state)
                    for k, p in net.state_dict().items():
                        if freeze_after is not None and rnd >= freeze_after and k not in keys[-2:]:
                            p.copy_(state[k])
                        elif rank and p.ndim == 2:
                            u, sv, vh = torch.linalg.svd(p - state[k], full_matrices=False)
                            p.copy_(state[k] + (u[:, :rank] * sv[:rank]) @ vh[:rank])
            t_train += time.perf_counter() - t0
            tamper = _attack_transform(attack, s) if i in bad else None
            if tamper is not None:  # the demo's update-level attacks (scale, noise) on the trained delta
                with torch.no_grad():
                    after = net.state_dict()
                    changed = tamper({k: after[k] - state[k] for k in state})
                    for k, p in after.items():
                        p.copy_(state[k] + changed[k])
            addr = "0x%040x" % (i + 1)
            meta = {"bounty": "1", "base_version": str(version), "miner": addr, "dp": meta_dp,
                    "examples_bucket": str(dp.examples_bucket(len(y_m)))}
            items.append(RoundItem(rnd * miners + i, addr, version, make_update(state, net.state_dict(), meta)))
        decision = policy.judge(manifest, state, items, (X_val, split.y_val, None), bounty_id=1,
                                current_version=version, history=history, suspects=suspects, evidence=evidence)
        if hold and decision.new_state is None and rnd < rounds - 1 and len(items) + miners <= 32:
            held = items  # no gain: the owner waits for the next round's updates from the same version
            curve.append(curve[-1] if curve else _score(manifest, state, X_val, split.y_val))
            continue
        held = []
        settled.append(decision)
        evidence = decision.evidence
        suspects.update(v.miner for v in decision.verdicts if not v.accepted and not v.refund)
        bad_accepted += sum(1 for v in decision.accepted if v.index % miners in bad)
        honest_in_version += sum(1 for v in decision.accepted if v.index % miners not in bad)
        forfeited = [v for v in decision.verdicts if not v.accepted and not v.refund]
        forfeit_reasons.update(v.reason_code for v in forfeited if v.index % miners not in bad)
        honest_forfeits += sum(1 for v in forfeited if v.index % miners not in bad)
        bad_forfeited |= {v.index % miners for v in forfeited if v.index % miners in bad}
        if decision.new_state is not None:
            new = decision.new_state
            if parent is not None:
                alts = []
                if polyak:
                    alts.append({k: (new[k] + state[k] + parent[k]) / 3 for k in state})
                if heavy:
                    alts.append({k: new[k] + heavy * (state[k] - parent[k]) for k in state})
                for alt in alts:
                    if _score(manifest, alt, X_val, split.y_val) > _score(manifest, new, X_val, split.y_val):
                        new = alt
            parent, state = state, new
            version += 1
            history.extend(v.norm for v in decision.accepted)
        curve.append(_score(manifest, state, X_val, split.y_val))
    _set_shrink(0.0)
    out = {"final": curve[-1], "curve": curve, "bad_accepted": bad_accepted, "epsilon": eps, "train_s": t_train,
           "honest_forfeits": honest_forfeits, "forfeit_reasons": dict(forfeit_reasons),
           "honest_in_version": honest_in_version / ((miners - malicious) * rounds),
           "attackers_never_forfeited": len(bad - bad_forfeited)}
    target = CROSS_ENTROPY_TARGETS[dataset] if manifest.metric == "cross_entropy" else TARGETS[dataset]
    nets = payouts(settled, miners, higher_is_better=manifest.higher_is_better, target=target)
    out["attacker_best_net"] = max((nets[m] for m in bad), default=0.0)
    out["honest_worst_net"] = min(nets[m] for m in range(miners) if m not in bad)
    if trigger is not None:
        net = build_model(manifest)
        net.load_state_dict(state)
        out["backdoor_success"] = attacks.backdoor_success(net, X_val, split.y_val, manifest, trigger=trigger,
                                                           target_label=0)
    return out


def payouts(decisions: list[Any], miners: int, *, higher_is_better: bool, target: float, reward: float = 10.0,
            stake: float = 0.01) -> dict[int, float]:
    """Each miner's net (ETH) under the contract's rules for the demo's bounty (10 ETH, stake 0.01):
    a round's pot is ``reward × improvement / (target − initial)`` (capped by what is left) plus the
    forfeited stakes so far, an accepted update gets its share of it (at most 35 % of the reward)
    and vests; a forfeit loses the stake and, with ``clawback``, the miner's vesting rewards.
    Items are ``index % miners`` (the replica's order)."""
    net: defaultdict[int, float] = defaultdict(float)
    vesting: defaultdict[int, float] = defaultdict(float)
    if not decisions:
        return {m: 0.0 for m in range(miners)}
    initial = decisions[0].score_before
    span = (target - initial) if higher_is_better else (initial - target)
    left, pool = reward, 0.0
    for d in decisions:
        pot = 0.0
        if d.new_state is not None and span > 0:
            gain = (d.score_after - d.score_before) if higher_is_better else (d.score_before - d.score_after)
            pot = min(left, reward * max(gain, 0.0) / span)
            left -= pot
            pot, pool = pot + pool, 0.0
        for v in d.verdicts:
            m = v.index % miners
            if v.accepted:
                amount = min(pot * v.share_bps / BPS, reward * MAX_SHARE_BPS / BPS)
                net[m] += amount
                vesting[m] += amount
            elif not v.refund:
                net[m] -= stake
                pool += stake
                if v.clawback:
                    net[m] -= vesting[m]
                    vesting[m] = 0.0
    return {m: float(net[m]) for m in range(miners)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3, help="runs per seed (the DP noise differs)")
    ap.add_argument("--dataset", default="digits", choices=datasets.DATASETS)
    ap.add_argument("--model", default="mlp")
    ap.add_argument("--attack", default="label_flip", choices=("label_flip", "backdoor", "scale", "noise"))
    ap.add_argument("--miners", type=int, default=8)
    ap.add_argument("--malicious", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--config", action="append", default=[], help="JSON (repeatable); default: the demo's")
    ap.add_argument("--out", type=Path, default=None, help="also write the rows here (JSON)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for c in args.config or ["{}"]:
        cfg = json.loads(c)
        t0 = time.perf_counter()
        runs = [run(args.dataset, args.model, s, cfg, rounds=args.rounds, miners=args.miners, malicious=args.malicious,
                    attack=args.attack)
                for s in range(args.first_seed, args.first_seed + args.seeds) for _ in range(args.repeats)]
        finals = [r["final"] for r in runs]
        per_seed = [statistics.mean(finals[i * args.repeats:(i + 1) * args.repeats]) for i in range(args.seeds)]
        row = {"config": cfg, "mean": round(statistics.mean(finals), 4), "std": round(statistics.pstdev(finals), 4),
               "per_seed": [round(v, 4) for v in per_seed], "finals": [round(f, 4) for f in finals],
               "bad_accepted": [r["bad_accepted"] for r in runs],
               "honest_forfeits": [r["honest_forfeits"] for r in runs],
               "forfeit_reasons": dict(sum((Counter(r["forfeit_reasons"]) for r in runs), Counter())),
               "honest_in_version": [round(r["honest_in_version"], 2) for r in runs],
               "attackers_never_forfeited": [r["attackers_never_forfeited"] for r in runs],
               "attacker_best_net": [round(r["attacker_best_net"], 4) for r in runs],
               "honest_worst_net": [round(r["honest_worst_net"], 4) for r in runs],
               **({"backdoor_success": [round(r["backdoor_success"], 3) for r in runs]}
                  if "backdoor_success" in runs[0] else {}),
               "epsilon": round(max(r["epsilon"] for r in runs), 3),
               "train_s": round(statistics.mean(r["train_s"] for r in runs), 2), "wall": round(time.perf_counter() - t0, 1)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.out is not None:
        args.out.write_text(json.dumps({"dataset": args.dataset, "model": args.model, "seeds": args.seeds,
                                        "repeats": args.repeats, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
