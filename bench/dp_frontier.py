"""The privacy/accuracy frontier of the market, in an offline replica of the demo (no chain, no store).

`python -m bench.dp_frontier [--seeds 3] [--grid quick|full] [--out bench/dp_frontier.json]`

Replica: the demo's digits split (25% held-out validation, Dirichlet α = 1 label split over 8
miners, min 10 rows each), all miners honest, 5 rounds. Every round each miner trains the *same*
current model version on its shard (``mine.dp.train_dp`` with the candidate settings, or
``mine.train.train`` for the non-private reference), the owner clips every delta to the round's
median norm, averages them and applies the mean with a server learning rate (DP-FedAvg: averaging
k updates divides the noise by √k), then scores the new version on the validation split (with ``--step-search``, like the round
policy of ``mine.policy``: the aggregate at 1, 0.5, 2 and 0.25 times the server lr, the best
validation score kept, no new version if none improves). A row is
the final validation accuracy, mean ± std over seeds, next to the per-update ε (δ = 1e-5) and the
time of one miner's local training relative to plain training.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mine import datasets, dp
from mine.evaluate import evaluate
from mine.model import apply_update, build_model, default_manifest, model_state, update_norm, with_normalization
from mine.train import train

MINERS, ROUNDS = 8, 5


def world(seed: int, dataset: str = "digits") -> dict[str, Any]:
    d = datasets.load(dataset)
    split = datasets.train_validation_split(d.X, d.y, validation_fraction=0.25, seed=seed, task=d.task)
    shards = datasets.dirichlet_shards(split.y_train, MINERS, alpha=1.0, seed=seed, min_size=10, task=d.task)
    manifest = with_normalization(default_manifest(dataset), split.X_val)
    if dataset == "diabetes":  # the demo's settings for the linear model (mine.demo.TRAINING)
        manifest = dataclasses.replace(manifest, training={**manifest.training, "epochs": 20, "lr": 0.02,
                                                           "batch_size": 32, "optimizer": "sgd"})
    state = model_state(build_model(manifest, seed=seed))
    if manifest.task == "regression":  # like the demo's owner: start by predicting the mean
        last_bias = [k for k in state if k.endswith(".bias")][-1]
        state[last_bias] = torch.full_like(state[last_bias], float(np.mean(split.y_val)))
    return {"split": split, "shards": shards, "manifest": manifest, "initial": state}


def _score(manifest: Any, state: dict[str, torch.Tensor], split: Any) -> float:
    net = build_model(manifest)
    net.load_state_dict(state)
    return evaluate(net, split.X_val, split.y_val, manifest).score


def run_market(w: dict[str, Any], seed: int, settings: dp.DPSettings | None, *, server_lr: float,
               step_search: tuple[float, ...] = ()) -> dict[str, Any]:
    """Final validation accuracy of 5 rounds of the market with these local settings.

    ``step_search`` (the round policy's): try the aggregate at these multiples of ``server_lr``, keep
    the best validation score, and publish no version if none improves.
    """
    manifest, split = w["manifest"], w["split"]
    state = {k: v.clone() for k, v in w["initial"].items()}
    current = _score(manifest, state, split)
    better = (lambda a, b: a > b) if manifest.higher_is_better else (lambda a, b: a < b)
    seconds, eps = 0.0, 0.0
    curve = []
    for rnd in range(ROUNDS):
        deltas = []
        for i, idx in enumerate(w["shards"]):
            net = build_model(manifest)
            net.load_state_dict(state)
            X, y = split.X_train[idx].astype(np.float32), split.y_train[idx]
            s = seed * 100_000 + 1000 * rnd + i
            if settings is None:
                seconds += train(net, X, y, manifest, seed=s).seconds
            else:
                out = dp.train_dp(net, X, y, manifest, settings, seed=s, noise_seed=s + 7)
                seconds += out.result.seconds
                eps = max(eps, out.epsilon)
            trained = model_state(net)
            deltas.append({k: trained[k] - state[k] for k in state})
        median = statistics.median(update_norm(d) for d in deltas)
        clipped = []
        for d in deltas:
            f = min(1.0, median / max(update_norm(d), 1e-12))
            clipped.append({k: v * f for k, v in d.items()})
        mean = {k: torch.stack([d[k] for d in clipped]).mean(0) for k in state}
        if not step_search:
            state = apply_update(state, mean, scale=server_lr)
            current = _score(manifest, state, split)
        else:
            best_state, best = state, current
            for mult in step_search:
                candidate = apply_update(state, mean, scale=server_lr * mult)
                score = _score(manifest, candidate, split)
                if better(score, best):
                    best_state, best = candidate, score
            state, current = best_state, best
        curve.append(current)
    return {"accuracy": curve[-1], "curve": curve, "train_seconds": seconds, "epsilon": eps}


def grid(kind: str) -> list[tuple[dp.DPSettings | None, float]]:
    rows: list[tuple[dp.DPSettings | None, float]] = [(None, s) for s in (0.5, 1.0)]
    if kind == "quick":
        combos = itertools.product((2.0, 4.0, 8.0), (0.5, 1.0), (10, 20), (1.0,), (("adam", 0.01),), (1.0,))
    else:
        combos = itertools.product((1.0, 2.0, 4.0, 8.0), (0.25, 0.5, 1.0), (5, 10, 20, 40), (0.5, 1.0, 2.0),
                                   (("adam", 0.01), ("adam", 0.03), ("sgd", 0.5)), (1.0, 2.0))
    for eps, q, steps, clip, (opt, lr), slr in combos:
        rows.append((dp.DPSettings(target_epsilon=eps, sample_rate=q, steps=steps, max_grad_norm=clip,
                                   optimizer=opt, lr=lr), slr))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--dataset", default="digits", choices=datasets.DATASETS)
    ap.add_argument("--grid", default="quick")
    ap.add_argument("--config", action="append", default=[],
                    help="JSON of DPSettings plus server_lr (repeatable); replaces the grid")
    ap.add_argument("--step-search", action="store_true",
                    help="the round policy's step search (x1, 0.5, 2, 0.25 of server_lr; no version without a gain)")
    ap.add_argument("--out", type=Path, default=Path("bench/dp_frontier.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    worlds = {s: world(s, args.dataset) for s in range(args.seeds)}
    if args.config:
        rows = []
        for c in args.config:
            raw = json.loads(c)
            slr = raw.pop("server_lr", 1.0)
            rows.append((dp.DPSettings.from_dict(raw) if raw else None, slr))
    else:
        rows = grid(args.grid)
    results = []
    for settings, slr in rows:
        t0 = time.perf_counter()
        search = (1.0, 0.5, 2.0, 0.25) if args.step_search else ()
        runs = [run_market(worlds[s], s, settings, server_lr=slr, step_search=search) for s in worlds]
        accs = [r["accuracy"] for r in runs]
        row = {
            "dp": None if settings is None else settings.to_dict(), "server_lr": slr, "step_search": list(search),
            "epsilon": max(r["epsilon"] for r in runs), "accuracy": statistics.mean(accs),
            "accuracy_std": statistics.pstdev(accs), "curve": [statistics.mean(c) for c in zip(*(r["curve"] for r in runs))],
            "train_seconds": statistics.mean(r["train_seconds"] for r in runs), "wall": time.perf_counter() - t0,
        }
        results.append(row)
        print(json.dumps(row), flush=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
