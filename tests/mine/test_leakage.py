"""The leakage attacks: each first shown to work on an unprotected update, then shown to fail under DP.

Setting: the demo's digits MLP (64-32-10, Adam, 5 epochs, batch 32), normalised from the owner's
validation split, base model = the demo's initial model; updates come from ``mine``'s own training
paths (plain and DP-SGD at the default settings).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from mine import datasets, leakage
from mine.dp import DEFAULT_DP
from mine.model import build_model, default_manifest, with_normalization

SHAPE = (8, 8)
RANGE = 16.0


@pytest.fixture(scope="module")
def digits():
    data = datasets.load("digits")
    split = datasets.train_validation_split(data.X, data.y, validation_fraction=0.25, seed=0, task=data.task)
    manifest = with_normalization(default_manifest("digits"), split.X_val)
    base = build_model(manifest, seed=0).state_dict()
    return data, manifest, base


def _rows(data, n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).choice(len(data.y), size=n, replace=False)


def _one_per_class(data, classes: range) -> list[int]:
    return [int(np.flatnonzero(data.y == c)[3]) for c in classes]


# ------------------------------------------------------------------ the attacks work unprotected


def test_label_of_a_single_row_is_recovered_exactly(digits):
    data, manifest, base = digits
    for i in _one_per_class(data, range(10)):
        delta, record = leakage.local_update(manifest, base, data.X[i:i + 1], data.y[i:i + 1], seed=i)
        assert record is None
        assert leakage.recover_labels(delta, 1).tolist() == [int(data.y[i])]
        assert leakage.label_confidence(delta) > leakage.CONFIDENT_LABEL


def test_label_set_of_eight_rows_is_recovered_with_full_precision(digits):
    data, manifest, base = digits
    idx = _rows(data, 8, seed=1)
    delta, _ = leakage.local_update(manifest, base, data.X[idx], data.y[idx])
    found = leakage.LabelRecovery.measure(leakage.recover_labels(delta, 8), data.y[idx], 10)
    assert found.precision == 1.0
    assert found.recall >= 0.8


def test_first_layer_attack_returns_the_row_exactly_under_plain_sgd(digits):
    data, manifest, base = digits
    sgd = dataclasses.replace(manifest, training={**manifest.training, "optimizer": "sgd", "lr": 0.05})
    i = _one_per_class(data, range(1))[0]
    delta, _ = leakage.local_update(sgd, base, data.X[i:i + 1], data.y[i:i + 1])
    x = leakage.invert_first_layer(sgd, delta, data.X)
    assert leakage.psnr(x, data.X[i], RANGE) > 40


def test_first_layer_attack_beats_the_class_mean_under_the_demo_settings(digits):
    data, manifest, base = digits
    rows = _one_per_class(data, range(0, 10, 3))
    ours, baseline, ssim_ours, ssim_base = [], [], [], []
    for i in rows:
        delta, _ = leakage.local_update(manifest, base, data.X[i:i + 1], data.y[i:i + 1], seed=i)
        x = leakage.invert_first_layer(manifest, delta, data.X)
        mean = leakage.class_mean_baseline(data.X, data.y, data.y[i:i + 1])[0]
        ours.append(leakage.psnr(x, data.X[i], RANGE))
        baseline.append(leakage.psnr(mean, data.X[i], RANGE))
        ssim_ours.append(leakage.ssim(x, data.X[i], RANGE, SHAPE))
        ssim_base.append(leakage.ssim(mean, data.X[i], RANGE, SHAPE))
    assert np.mean(ours) > np.mean(baseline) + 2
    assert np.mean(ssim_ours) > np.mean(ssim_base)


def _invert_eight(digits, *, dp):
    data, manifest, base = digits
    idx = _rows(data, 8, seed=2)
    delta, _ = leakage.local_update(manifest, base, data.X[idx], data.y[idx], dp=dp, noise_seed=7)
    labels = np.resize(leakage.recover_labels(delta, 8), 8)
    recon = leakage.invert_update(manifest, base, delta, labels, bounds=(0, RANGE), image_shape=SHAPE,
                                  steps=300, restarts=1, init=data.X.mean(axis=0),
                                  optimizer=dp.optimizer if dp is not None else None)
    X = data.X[idx]
    match = leakage.match_reconstructions(recon, X)
    baseline = leakage.class_mean_baseline(data.X, data.y, data.y[idx])
    ours = np.mean([leakage.psnr(recon[match[i]], X[i], RANGE) for i in range(8)])
    theirs = np.mean([leakage.psnr(baseline[i], X[i], RANGE) for i in range(8)])
    return recon, ours, theirs, leakage.reidentified(recon, data.X, idx).mean()


def test_gradient_inversion_beats_the_class_mean_and_reidentifies_rows(digits):
    recon, ours, class_mean, reidentified = _invert_eight(digits, dp=None)
    assert recon.shape == (8, 64) and recon.min() >= 0 and recon.max() <= RANGE
    assert ours > class_mean
    assert reidentified >= 2 / 8  # chance: 8 / 1797 = 0.4%


def test_membership_auc_is_high_without_dp(digits):
    data, manifest, base = digits
    idx = _rows(data, 8, seed=3)
    others = np.setdiff1d(np.arange(len(data.y)), idx)[:300]
    delta, _ = leakage.local_update(manifest, base, data.X[idx], data.y[idx])
    members = leakage.membership_scores(manifest, base, delta, data.X[idx], data.y[idx])
    nonmembers = leakage.membership_scores(manifest, base, delta, data.X[others], data.y[others])
    assert leakage.auc(members, nonmembers) > 0.85


# ------------------------------------------------------------------ DP at the default settings defeats them


def test_dp_leaves_the_single_label_at_chance(digits):
    data, manifest, base = digits
    rows = _one_per_class(data, range(10))
    correct = 0
    for i in rows:
        delta, record = leakage.local_update(manifest, base, data.X[i:i + 1], data.y[i:i + 1], seed=i,
                                             dp=DEFAULT_DP, noise_seed=100 + i)
        assert record is not None and record.epsilon <= DEFAULT_DP.target_epsilon
        correct += leakage.recover_labels(delta, 1).tolist() == [int(data.y[i])]
        assert leakage.label_confidence(delta) < leakage.CONFIDENT_LABEL
    assert correct <= 4  # chance 1 in 10; P(>= 5 of 10 by chance) = 0.2%; unprotected: 10 of 10


def test_dp_pushes_reconstructions_below_the_class_mean(digits):
    data, manifest, base = digits
    rows = _one_per_class(data, range(0, 10, 3))
    ours, baseline = [], []
    for i in rows:
        delta, _ = leakage.local_update(manifest, base, data.X[i:i + 1], data.y[i:i + 1], seed=i,
                                        dp=DEFAULT_DP, noise_seed=i)
        x = leakage.invert_first_layer(manifest, delta, data.X, optimizer=DEFAULT_DP.optimizer)
        ours.append(leakage.psnr(x, data.X[i], RANGE))
        baseline.append(leakage.psnr(leakage.class_mean_baseline(data.X, data.y, data.y[i:i + 1])[0], data.X[i], RANGE))
    assert np.mean(ours) < np.mean(baseline)


def test_dp_stops_gradient_inversion(digits):
    _, ours, class_mean, reidentified = _invert_eight(digits, dp=DEFAULT_DP)
    assert ours < class_mean
    assert reidentified <= 1 / 8


# ------------------------------------------------------------------ measures


def test_dp_auc_bound_matches_the_pure_dp_closed_form():
    assert leakage.dp_auc_bound(0.0, 0.0) == pytest.approx(0.5)
    assert leakage.dp_auc_bound(1.0, 0.0) == pytest.approx(math.e / (1 + math.e), abs=1e-6)
    assert leakage.dp_auc_bound(1.0, 0.0, group=2) == pytest.approx(math.e ** 2 / (1 + math.e ** 2), abs=1e-6)
    assert leakage.dp_auc_bound(1.0, 1e-5) > leakage.dp_auc_bound(1.0, 0.0)
    assert leakage.dp_auc_bound(math.inf, 0.0) == 1.0


def test_auc_is_one_for_separated_scores_and_counts_ties_half():
    assert leakage.auc(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 1.0
    assert leakage.auc(np.array([1.0]), np.array([1.0, 1.0])) == 0.5
    assert leakage.auc(np.array([0.0]), np.array([1.0])) == 0.0


def test_psnr_and_ssim_of_an_image_with_itself_are_perfect(digits):
    data, _, _ = digits
    assert leakage.psnr(data.X[0], data.X[0], RANGE) == math.inf
    assert leakage.ssim(data.X[0], data.X[0], RANGE, SHAPE) == pytest.approx(1.0)
    assert leakage.ssim(data.X[0], data.X[1], RANGE, SHAPE) < 1.0


def test_reconstructions_are_matched_to_their_rows():
    truth = np.array([[0.0, 0.0], [10.0, 10.0]])
    recon = np.array([[9.0, 9.0], [1.0, 0.0]])
    assert leakage.match_reconstructions(recon, truth).tolist() == [1, 0]


# ------------------------------------------------------------------ `mine privacy check`


def _check(tmp_path, digits, *, dp) -> str:
    from click.testing import CliRunner

    from mine.cli import cli
    from mine.model import make_update, state_to_bytes

    data, manifest, base = digits
    i = _one_per_class(data, range(7, 8))[0]
    delta, record = leakage.local_update(manifest, base, data.X[i:i + 1], data.y[i:i + 1], dp=dp, noise_seed=3)
    metadata = {"bounty": "1", "base_version": "0", "dp": record.to_json() if record else "off"}
    update = tmp_path / "update.safetensors"
    update.write_bytes(make_update(base, {k: base[k] + delta[k] for k in base}, metadata))
    (tmp_path / "model.json").write_bytes(manifest.to_json())
    (tmp_path / "base.safetensors").write_bytes(state_to_bytes(base))
    datasets.write_csv(tmp_path / "mine.csv", data.X[i:i + 1], data.y[i:i + 1], data.feature_names, data.target_name)
    runner, home = CliRunner(), ["--home", str(tmp_path / "home")]
    for args in (["init", "--offline"], ["vault", "add", "private", str(tmp_path / "mine.csv"), "--target", "digit"],
                 ["privacy", "check", str(update), "--dataset", "private", "--model", str(tmp_path / "model.json"),
                  "--base", str(tmp_path / "base.safetensors"), "--steps", "100"]):
        result = runner.invoke(cli, [*home, *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
    return result.output


def test_privacy_check_flags_an_unprotected_single_row(tmp_path, digits):
    out = _check(tmp_path, digits, dp=None)
    assert "no DP" in out and "verdict: LEAKS" in out
    label_row = next(line for line in out.splitlines() if "label" in line)
    assert "recovered" in label_row and "exposed" in label_row
    assert "membership" in out and "re-identification" in out


def test_privacy_check_passes_a_dp_update(tmp_path, digits):
    out = _check(tmp_path, digits, dp=DEFAULT_DP)
    assert f"DP ε = {DEFAULT_DP.target_epsilon:.2f}" in out
    assert "verdict: no measured leak" in out, out
