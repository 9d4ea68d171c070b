"""DP training time against plain training, on the demo's 8 digits shards.

`python -m bench.dp_time [--repeats 5]`

Per shard, the median over repeats of the optimisation-loop seconds of:

* plain — ``mine.train.train`` at the manifest's defaults (Adam, 5 epochs of batches of 32), what
  ``mine train --no-dp`` runs;
* dp — ``mine.dp.train_dp`` at ``DEFAULT_DP`` (10 full-batch DP-SGD steps, closed-form clipping);
* opacus — the same mechanism through Opacus' own ``PrivacyEngine.make_private`` (GradSampleModule
  hooks, DPOptimizer, a DataLoader holding the shard as one batch), for reference.

Prints one JSON object: seconds summed over the shards and the ratios dp/plain and opacus/dp.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings

import numpy as np
import torch

from mine import datasets, dp
from mine.model import build_model, default_manifest, prepare_inputs, prepare_targets, with_normalization
from mine.train import train


def _opacus_seconds(manifest, X: np.ndarray, y: np.ndarray, record: dp.DPRecord, lr: float) -> float:  # noqa: ANN001
    from opacus import PrivacyEngine

    model = build_model(manifest, seed=0)
    xt, yt = prepare_inputs(manifest, X), prepare_targets(manifest, y)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xt, yt), batch_size=len(yt))
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        engine = PrivacyEngine(accountant="rdp")
        model, opt, loader = engine.make_private(module=model, optimizer=opt, data_loader=loader,
                                                 noise_multiplier=record.noise_multiplier,
                                                 max_grad_norm=record.max_grad_norm, poisson_sampling=False)
        start = time.perf_counter()
        for _ in range(record.steps):
            for xb, yb in loader:
                opt.zero_grad()
                torch.nn.functional.cross_entropy(model(xb), yb).backward()
                opt.step()
        return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    d = datasets.load("digits")
    split = datasets.train_validation_split(d.X, d.y, validation_fraction=0.25, seed=0, task=d.task)
    shards = datasets.dirichlet_shards(split.y_train, 8, alpha=1.0, seed=0, min_size=10, task=d.task)
    manifest = with_normalization(default_manifest("digits"), split.X_val)
    totals = {"plain": 0.0, "dp": 0.0, "opacus": 0.0}
    for idx in shards:
        X, y = split.X_train[idx].astype(np.float32), split.y_train[idx]
        record = dp.DEFAULT_DP.resolve(len(y))
        runs: dict[str, list[float]] = {k: [] for k in totals}
        for r in range(args.repeats):
            runs["plain"].append(train(build_model(manifest, seed=0), X, y, manifest, seed=r).seconds)
            runs["dp"].append(dp.train_dp(build_model(manifest, seed=0), X, y, manifest, dp.DEFAULT_DP, seed=r).result.seconds)
            runs["opacus"].append(_opacus_seconds(manifest, X, y, record, float(dp.DEFAULT_DP.lr or 1.0)))
        for k in totals:
            totals[k] += statistics.median(runs[k])
    print(json.dumps({"seconds": {k: round(v, 4) for k, v in totals.items()},
                      "dp_over_plain": round(totals["dp"] / totals["plain"], 3),
                      "opacus_over_dp": round(totals["opacus"] / totals["dp"], 3),
                      "shards": [len(s) for s in shards]}))


if __name__ == "__main__":
    main()
