"""Leakage of a miner's update: the attack table, without DP and with ``mine``'s default DP.

Setting (the demo's): digits, the owner's 25% validation split (seed 0) normalises the manifest
(MLP 64-32-10, Adam lr 0.01, 5 epochs, batch 32), the base model is the demo's initial model, and
a miner's update comes from ``mine``'s own training paths (``mine.train.train`` for ``--no-dp``,
``mine.dp.train_dp`` at ``mine.dp.default_settings`` otherwise). A miner holds n = 1, 8 or 32 rows drawn from the
training split, or one of the demo's 8 Dirichlet shards (with DP 300 updates at n = 1 and 8, without
60; 10 at n = 32, the 8 shards; gradient inversion on the first 10 / 8 / 4 / 8 of them). Per update the adversary —
base model, update and the optimizer that trained it in hand — runs (:mod:`mine.leakage`):

* label recovery from the last-layer bias: label-set precision / recall, and exact labels at n = 1;
* reconstruction: Inverting Gradients (cosine + TV, 300 Adam steps, started from the mean digit) at every n, and at n = 1 the
  analytic first-layer attack too; PSNR / SSIM of each true row against its matched reconstruction
  next to the class-mean image (what knowing only the label gives); "best" is the better of the two;
* re-identification: the nearest of all 1,797 digits to each reconstruction is one of the miner's
  rows (chance n / 1797);
* membership from the loss drop: AUC of the miner's rows against 300 rows of the validation split
  (which no miner trains on), next to the largest AUC the update's (ε, δ) allows for this
  replace-one comparison (:func:`mine.leakage.dp_auc_bound` with ``group=2``).

Goals (with DP, n = 1 and 8): label recovery, exact labels and re-identification not significantly
above chance (one-sided binomial tests over the pooled trials, at a family-wise 1 %: each of a goal's
k p-values above 0.01 / k), reconstruction PSNR and
SSIM not above the class-mean baseline, membership AUC within its bound.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from mine import datasets, leakage
from mine.dp import default_settings
from mine.model import build_model, default_manifest, with_normalization

SEED = 0
SHAPE = (8, 8)
RANGE = 16.0
NONMEMBERS = 300
# updates per case: every update is attacked for labels and membership (about 40 ms each), the first
# INVERSIONS of them by gradient inversion too (seconds each). The DP rows carry the goals: 300 updates
# let a 1 % test see a leak of 0.17 exact labels at n = 1 against 0.10 chance in ~4 benches of 5
# (60 updates at 5 %: ~1 in 3). Without DP everything leaks; NO_DP_TRIALS updates show it.
TRIALS = {"full": {1: 300, 8: 300, 32: 10, "shards": 8}, "quick": {1: 3, 8: 2, 32: 1, "shards": 1}}
NO_DP_TRIALS = 60
INVERSIONS = {"full": {1: 10, 8: 8, 32: 4, "shards": 8}, "quick": {1: 2, 8: 1, 32: 1, "shards": 1}}
STEPS = {"full": 300, "quick": 60}
#: Family-wise error rate of each "at chance" goal. A goal tests several cases at once (labels: the
#: per-label and exact-set tests at n = 1 and the per-label test at n = 8), so each of its k
#: p-values is compared with SIGNIFICANCE / k (Bonferroni): a leak-free update misses the goal in at
#: most 1 % of benches (at 5 % with 60 updates it did, about once in 20 full benches).
SIGNIFICANCE = 0.01


def at_chance(p_values: list[float]) -> bool:
    """No test of the family rejects "at chance" at the family-wise level :data:`SIGNIFICANCE`."""
    return bool(p_values) and min(p_values) > SIGNIFICANCE / len(p_values)


def _setting() -> dict[str, Any]:
    data = datasets.load("digits")
    ids = np.arange(len(data.y), dtype=np.float32)[:, None]
    # the demo's split, as row ids into the full dataset (the split's draws depend only on y and the seed)
    split = datasets.train_validation_split(ids, data.y, validation_fraction=0.25, seed=SEED, task=data.task)
    train_ids, val_ids = split.X_train[:, 0].astype(np.int64), split.X_val[:, 0].astype(np.int64)
    manifest = with_normalization(default_manifest("digits"), data.X[val_ids])
    shards = datasets.dirichlet_shards(data.y[train_ids], 8, alpha=1.0, seed=SEED, min_size=10, task=data.task)
    return {"data": data, "train_ids": train_ids, "val_ids": val_ids, "manifest": manifest,
            "base": build_model(manifest, seed=SEED).state_dict(), "shards": [train_ids[s] for s in shards],
            "public_mean": data.X.mean(axis=0)}


def _attack(s: dict[str, Any], idx: np.ndarray, *, dp: Any, seed: int, steps: int, invert: bool) -> dict[str, Any]:
    data, manifest, base = s["data"], s["manifest"], s["base"]
    X, y, n = data.X[idx], data.y[idx], len(idx)
    t0 = time.perf_counter()
    delta, record = leakage.local_update(manifest, base, X, y, seed=seed, dp=dp)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    # the adversary reads how the update was trained from its metadata (the DP settings name the optimizer)
    optimizer = (dp.optimizer if dp is not None else None) or str(manifest.training["optimizer"])
    predicted = leakage.recover_labels(delta, n)
    labels = leakage.LabelRecovery.measure(predicted, y, int(manifest.num_classes or 0))
    out: dict[str, Any] = {
        "n": n, "label_precision": labels.precision, "label_recall": labels.recall,
        "label_chance_precision": labels.chance_precision, "labels_predicted": len(labels.predicted),
        "label_hits": round(labels.precision * len(labels.predicted)), "label_exact": labels.exact,
    }
    if invert:
        guess = predicted if n == 1 else np.resize(predicted, n)
        recon = leakage.invert_update(manifest, base, delta, guess, bounds=(0.0, RANGE), image_shape=SHAPE,
                                      steps=steps, restarts=1, seed=seed, init=s["public_mean"],
                                      optimizer=optimizer)
        match = leakage.match_reconstructions(recon, X)
        baseline = leakage.class_mean_baseline(data.X, data.y, y)
        out.update({
            "ig_psnr": float(np.mean([leakage.psnr(recon[match[i]], X[i], RANGE) for i in range(n)])),
            "ig_ssim": float(np.mean([leakage.ssim(recon[match[i]], X[i], RANGE, SHAPE) for i in range(n)])),
            "baseline_psnr": float(np.mean([leakage.psnr(baseline[i], X[i], RANGE) for i in range(n)])),
            "baseline_ssim": float(np.mean([leakage.ssim(baseline[i], X[i], RANGE, SHAPE) for i in range(n)])),
            "reidentified": int(leakage.reidentified(recon, data.X, idx).sum()),
            # a label-only attacker's re-identification: the class-mean images' nearest rows
            "baseline_reidentified": int(leakage.reidentified(baseline, data.X, idx).sum()),
            "inverted": True,
        })
        if n == 1:
            x = leakage.invert_first_layer(manifest, delta, data.X, optimizer=optimizer)
            out["first_layer_psnr"] = leakage.psnr(x, X[0], RANGE)
            out["first_layer_ssim"] = leakage.ssim(x, X[0], RANGE, SHAPE)
            out["reidentified"] = max(out["reidentified"], int(leakage.reidentified(x[None], data.X, idx).sum()))
    nonmembers = np.random.default_rng(seed).choice(s["val_ids"], size=NONMEMBERS, replace=False)
    out["membership_auc"] = leakage.auc(
        leakage.membership_scores(manifest, base, delta, X, y),
        leakage.membership_scores(manifest, base, delta, data.X[nonmembers], data.y[nonmembers]))
    out["epsilon"] = None if record is None else record.epsilon
    out["delta"] = None if record is None else record.delta
    out["auc_bound"] = 1.0 if record is None else leakage.dp_auc_bound(record.epsilon, record.delta, group=2)
    out["auc_bound_add_remove"] = 1.0 if record is None else leakage.dp_auc_bound(record.epsilon, record.delta)
    out["train_s"], out["attack_s"] = train_s, time.perf_counter() - t0
    return out


def _binomial_p(hits: int, trials: int, p: float) -> float:
    from scipy.stats import binomtest

    return float(binomtest(hits, trials, min(max(p, 1e-12), 1.0), alternative="greater").pvalue) if trials else 1.0


def _summary(case: str, dp: bool, runs: list[dict[str, Any]]) -> dict[str, Any]:
    def mean(key: str) -> float | None:
        vals = [r[key] for r in runs if r.get(key) is not None]
        return float(np.mean(vals)) if vals else None

    ns = [r["n"] for r in runs]
    inv = [r for r in runs if r.get("inverted")]
    rows_total = sum(r["n"] for r in inv)
    predicted = sum(r["labels_predicted"] for r in runs)
    hits = sum(r["label_hits"] for r in runs)
    chance_precision = mean("label_chance_precision") or 0.0
    reid = sum(r["reidentified"] for r in inv)
    reid_chance = float(np.mean([r["n"] / 1797 for r in inv]))
    reid_trials = rows_total + sum(1 for r in inv if r["n"] == 1)  # two attacks at n=1
    s: dict[str, Any] = {
        "case": case, "dp": dp, "trials": len(runs), "inversions": len(inv), "rows": f"{min(ns)}-{max(ns)}" if min(ns) != max(ns) else str(ns[0]),
        "epsilon": mean("epsilon"), "delta": mean("delta"),
        "label_precision": mean("label_precision"), "label_recall": mean("label_recall"),
        "label_chance_precision": chance_precision,
        "label_p_value": _binomial_p(hits, predicted, chance_precision),
        "ig_psnr": mean("ig_psnr"), "ig_ssim": mean("ig_ssim"),
        "baseline_psnr": mean("baseline_psnr"), "baseline_ssim": mean("baseline_ssim"),
        "reidentified": reid / rows_total, "reid_chance": reid_chance,
        "reid_class_mean": sum(r["baseline_reidentified"] for r in inv) / rows_total,
        "reid_p_value": _binomial_p(reid, reid_trials, reid_chance),
        "membership_auc": mean("membership_auc"), "auc_bound": mean("auc_bound"),
        "auc_bound_add_remove": mean("auc_bound_add_remove"),
        "attack_s": mean("attack_s"), "train_s": mean("train_s"),
    }
    if all(r["n"] == 1 for r in runs):
        exact = sum(bool(r["label_exact"]) for r in runs)
        s["labels_exact"] = exact / len(runs)
        s["labels_exact_p_value"] = _binomial_p(exact, len(runs), 0.1)
        s["first_layer_psnr"], s["first_layer_ssim"] = mean("first_layer_psnr"), mean("first_layer_ssim")
    s["best_psnr"] = max(v for v in (s["ig_psnr"], s.get("first_layer_psnr")) if v is not None)
    s["best_ssim"] = max(v for v in (s["ig_ssim"], s.get("first_layer_ssim")) if v is not None)
    return s


def run(*, quick: bool = False) -> dict[str, Any]:
    mode = "quick" if quick else "full"
    torch.set_num_threads(1)
    s = _setting()
    rng = np.random.default_rng(SEED)
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    for case, trials in TRIALS[mode].items():
        if case == "shards":
            picks = [s["shards"][i] for i in range(trials)]
        else:
            picks = [rng.choice(s["train_ids"], size=int(case), replace=False) for _ in range(trials)]
        for dp in (None, default_settings(s["manifest"])):
            runs = [_attack(s, idx, dp=dp, seed=SEED + t, steps=STEPS[mode], invert=t < INVERSIONS[mode][case])
                    for t, idx in enumerate(picks if dp is not None else picks[:NO_DP_TRIALS])]
            rows.append(_summary("shards" if case == "shards" else f"n={case}", dp is not None, runs))
    return {"setting": "digits MLP 64-32-10, demo settings (Adam lr 0.01, 5 epochs, batch 32), base = demo's "
                       "initial model", "default_dp": default_settings(s["manifest"]).to_dict(), "steps": STEPS[mode],
            "rows": rows, "wall_s": round(time.perf_counter() - started, 1)}


def goals(r: dict[str, Any]) -> dict[str, Any]:
    """With DP at n = 1 and 8: labels and re-identification at chance, reconstructions not above the
    class-mean image; membership AUC within the bound of the update's ε, at every size."""
    out: dict[str, Any] = {}
    dp_rows = [row for row in r["rows"] if row["dp"]]
    small = [row for row in dp_rows if row["case"] in ("n=1", "n=8")]
    label_ps = [row["label_p_value"] for row in small] + [row["labels_exact_p_value"] for row in small
                                                          if "labels_exact_p_value" in row]
    out["privacy_labels_at_chance"] = {
        "value": f"min p = {min(label_ps):.3f} of {len(label_ps)} tests" if label_ps else None,
        "goal": f"DP, n = 1 and 8: label recovery not above chance (each binomial p > {SIGNIFICANCE} / tests)",
        "met": at_chance(label_ps)}
    reid_ps = [row["reid_p_value"] for row in small]
    out["privacy_reidentification_at_chance"] = {
        "value": ", ".join(f"{row['case']} {row['reidentified']:.1%} (chance {row['reid_chance']:.2%})" for row in small),
        "goal": f"DP, n = 1 and 8: re-identification not above chance (each binomial p > {SIGNIFICANCE} / tests)",
        "met": at_chance(reid_ps)}
    out["privacy_reconstruction_below_class_mean"] = {
        "value": ", ".join(f"{row['case']} {row['best_psnr']:.1f}/{row['baseline_psnr']:.1f} dB, "
                           f"SSIM {row['best_ssim']:.2f}/{row['baseline_ssim']:.2f}" for row in small),
        "goal": "DP, n = 1 and 8: best reconstruction PSNR and SSIM <= the class-mean image's",
        "met": bool(small) and all(row["best_psnr"] <= row["baseline_psnr"] and row["best_ssim"] <= row["baseline_ssim"]
                                   for row in small)}
    out["privacy_membership_within_bound"] = {
        "value": ", ".join(f"{row['case']} {row['membership_auc']:.2f} <= {row['auc_bound']:.3f}" for row in dp_rows),
        "goal": "DP: membership AUC <= the bound its (ε, δ) implies (replace-one)",
        "met": bool(dp_rows) and all(row["membership_auc"] <= row["auc_bound"] for row in dp_rows)}
    return out
