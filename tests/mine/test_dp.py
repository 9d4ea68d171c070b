"""DP-SGD training and its accounting (Opacus' RDP accountant)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from opacus.accountants import RDPAccountant

from mine import datasets, dp
from mine import model as M
from mine.errors import ValidationError


@pytest.fixture(scope="module")
def digits() -> tuple[M.Manifest, np.ndarray, np.ndarray]:
    d = datasets.load("digits")
    manifest = M.with_normalization(M.default_manifest("digits"), d.X)
    return manifest, d.X[:150].astype(np.float32), d.y[:150]


def _opacus_epsilon(record: dp.DPRecord) -> float:
    acc = RDPAccountant()
    for _ in range(record.steps):  # what Opacus' optimizer hook does after every step
        acc.step(noise_multiplier=record.noise_multiplier, sample_rate=record.sample_rate)
    return acc.get_epsilon(delta=record.delta)


def test_epsilon_in_the_record_is_opacus_accountant(digits) -> None:
    manifest, X, y = digits
    net = M.build_model(manifest, seed=0)
    out = dp.train_dp(net, X, y, manifest, dp.DPSettings(target_epsilon=3.0, sample_rate=0.25, epochs=2), seed=0)
    rec = dp.parse_dp_metadata(out.record.to_json())
    assert rec == out.record
    assert rec.steps == 8 and rec.sample_rate == 0.25 and rec.delta == 1e-5
    assert rec.epsilon == pytest.approx(_opacus_epsilon(rec), rel=1e-9)
    assert 0.97 * 3.0 <= rec.epsilon <= 3.0  # the solved noise reaches the target from below


def test_fixed_noise_multiplier_gives_the_accountant_epsilon(digits) -> None:
    manifest, X, y = digits
    out = dp.train_dp(M.build_model(manifest, seed=0), X, y, manifest,
                      dp.DPSettings(noise_multiplier=1.3, sample_rate=1.0, steps=5), seed=0)
    assert out.record.noise_multiplier == 1.3
    assert out.epsilon == pytest.approx(_opacus_epsilon(out.record), rel=1e-9)


def test_default_delta_is_at_most_one_over_n() -> None:
    assert dp.default_delta(50) == 1e-5
    assert dp.default_delta(1_000_000) == 1e-6
    assert dp.DPSettings(target_epsilon=1.0).resolve(3).delta <= 1 / 3


def test_closed_form_clipping_equals_per_example_gradients(digits) -> None:
    manifest, X, y = digits
    net = M.build_model(manifest, seed=1)
    x = M.prepare_inputs(manifest, X[:20])
    t = M.prepare_targets(manifest, y[:20])
    for C in (0.05, 1.0, 100.0):
        fast = dp._linear_clipped_sum(net, x, t, F.cross_entropy, C)
        slow = dp._vmap_clipped_sum(net, x, t, F.cross_entropy, C)
        assert torch.allclose(fast, slow, atol=1e-5, rtol=1e-4)
    one = dp._linear_clipped_sum(net, x[:1], t[:1], F.cross_entropy, 0.05)
    assert float(one.norm()) <= 0.05 * (1 + 1e-4)  # one example moves the sum by at most C


def test_noise_is_not_derived_from_the_training_seed(digits) -> None:
    manifest, X, y = digits
    settings = dp.DPSettings(noise_multiplier=1.0, sample_rate=0.5, steps=3)

    def run(**kw) -> torch.Tensor:
        net = M.build_model(manifest, seed=0)
        dp.train_dp(net, X, y, manifest, settings, seed=7, **kw)
        return torch.cat([p.detach().flatten() for p in net.parameters()])

    assert not torch.equal(run(), run())  # same seed, fresh noise
    assert torch.equal(run(noise_seed=5), run(noise_seed=5))  # repeatable only on request


def test_dp_training_learns(digits) -> None:
    manifest, X, y = digits
    net = M.build_model(manifest, seed=0)
    out = dp.train_dp(net, X, y, manifest, dp.DPSettings(target_epsilon=8.0, sample_rate=1.0, steps=30, lr=0.05),
                      seed=0, noise_seed=0)
    assert out.result.examples == 150 and out.result.metric > 0.5  # chance is 0.1


def test_settings_and_metadata_are_validated() -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        dp.DPSettings()
    with pytest.raises(ValidationError, match="sample_rate"):
        dp.DPSettings(target_epsilon=1.0, sample_rate=1.5)
    with pytest.raises(ValidationError, match="unknown DP setting"):
        dp.DPSettings.from_dict({"target_epsilon": 1.0, "clip": 2})
    assert dp.DPSettings.from_dict({"noise_multiplier": 1.0, "steps": 3}).total_steps() == 3
    assert dp.parse_dp_metadata("off") is None
    with pytest.raises(ValidationError, match="whether it was trained with DP"):
        dp.parse_dp_metadata(None)
    with pytest.raises(ValidationError, match="malformed"):
        dp.parse_dp_metadata('{"epsilon": 1}')


def test_examples_bucket_hides_the_exact_count() -> None:
    assert [dp.examples_bucket(n) for n in (0, 1, 2, 3, 8, 86, 127, 128, 273)] == [0, 1, 2, 2, 8, 64, 64, 128, 256]


def test_composition_is_tighter_than_adding_epsilons() -> None:
    one = dp.epsilon_for(1.5, 0.5, 10, 1e-5)
    two = dp.composed_epsilon([(1.5, 0.5, 10), (1.5, 0.5, 10)], 1e-5)
    assert one < two < 2 * one
    assert two == pytest.approx(dp.epsilon_for(1.5, 0.5, 20, 1e-5), rel=1e-9)
    assert math.isinf(dp.composed_epsilon([(0.0, 1.0, 1)], 1e-5))


def test_default_settings_come_from_the_manifest_or_the_task() -> None:
    digits = M.default_manifest("digits")
    assert dp.default_settings(digits) == dp.DEFAULT_DP
    assert dp.default_settings(M.default_manifest("diabetes")) == dp.DEFAULT_DP_REGRESSION
    custom = M.Manifest.from_dict({**digits.to_dict(), "training": {**digits.training,
                                                                    "dp": {"target_epsilon": 2.0, "steps": 5}}})
    assert M.Manifest.from_json(custom.to_json()) == custom
    assert dp.default_settings(custom) == dp.DEFAULT_DP.replace(target_epsilon=2.0, steps=5)
    fixed = M.Manifest.from_dict({**digits.to_dict(), "training": {**digits.training, "dp": {"noise_multiplier": 3.0}}})
    assert dp.default_settings(fixed).noise_multiplier == 3.0 and dp.default_settings(fixed).target_epsilon is None
    odd = M.Manifest.from_dict({**digits.to_dict(), "training": {**digits.training, "dp": {"clip": 1.0}}})
    with pytest.raises(ValidationError, match="unknown DP setting"):
        dp.default_settings(odd)
    with pytest.raises(ValidationError, match="training.dp"):
        M.Manifest.from_dict({**digits.to_dict(), "training": {**digits.training, "dp": [1]}})


def _opacus_history_epsilon(history: list[tuple[float, float, int]], delta: float) -> float:
    acc = RDPAccountant()
    for sigma, q, steps in history:
        for _ in range(steps):
            acc.step(noise_multiplier=sigma, sample_rate=q)
    return acc.get_epsilon(delta=delta)


@pytest.mark.parametrize(("q", "steps"), [(1.0, 10), (0.5, 20), (0.25, 40), (0.1, 100)])
def test_solved_noise_meets_the_target_with_poisson_sampling(q: float, steps: int) -> None:
    record = dp.DPSettings(target_epsilon=8.0, sample_rate=q, steps=steps).resolve(200)
    assert record.sample_rate == q and record.steps == steps
    opacus = _opacus_history_epsilon([record.history], record.delta)
    assert record.epsilon == pytest.approx(opacus, rel=1e-9)
    assert 0.97 * 8.0 <= record.epsilon <= 8.0


def test_composition_of_different_sample_rates_is_opacus_accountant() -> None:
    history = [(2.0, 1.0, 10), (1.2, 0.25, 40), (0.9, 0.1, 30)]
    assert dp.composed_epsilon(history, 1e-5) == pytest.approx(_opacus_history_epsilon(history, 1e-5), rel=1e-9)


def test_the_owner_recomputes_epsilon_with_the_stated_sample_rate() -> None:
    from mine.policy import EPSILON_TOO_HIGH, check_epsilon

    record = dp.DPSettings(target_epsilon=8.0, sample_rate=0.25, steps=40).resolve(200)
    assert check_epsilon(record.to_json(), max_epsilon=8.0) is None
    # the same noise and steps at a higher sampling rate cost more: understating epsilon is caught
    more = dataclasses.replace(record, sample_rate=0.5)
    assert dp.epsilon_for(more.noise_multiplier, 0.5, more.steps, more.delta) > 8.0
    rejection = check_epsilon(more.to_json(), max_epsilon=8.0)
    assert rejection is not None and rejection.code == EPSILON_TOO_HIGH and "sample rate 0.5" in rejection.reason


@pytest.mark.parametrize("epsilon", [1.0, 8.0])
def test_full_batch_steps_add_the_least_noise_per_pass(epsilon: float) -> None:
    """Why the defaults take full-batch steps: at equal ε and equal passes over the data (q x steps =
    10), the noise of the summed gradients, ``σ sqrt(steps) / (q steps)`` in units of the clip norm
    per example, is smallest at q = 1 — at a few hundred rows per miner privacy amplification by
    sampling does not make up for the smaller batches (``python -m bench.dp_demo`` measures the
    accuracy: q = 0.5, 0.25, 0.1 end lower)."""
    noise = {q: dp.noise_for_epsilon(epsilon, 1e-5, q, round(10 / q)) * math.sqrt(10 / q) / 10
             for q in (1.0, 0.5, 0.25, 0.1)}
    assert noise[1.0] == min(noise.values())


def test_the_accountant_searches_opacus_orders_without_importing_opacus() -> None:
    """ε comes from Opacus' RDP analysis loaded on its own: the same orders as RDPAccountant, and a
    process that only accounts never builds Opacus' training stack (seconds of start-up)."""
    import subprocess
    import sys

    assert list(dp.RDP_ORDERS) == list(RDPAccountant.DEFAULT_ALPHAS)
    code = ("import sys; from mine import dp; "
            "print(dp.epsilon_for(1.2, 0.5, 10, 1e-5), dp.noise_for_epsilon(4.0, 1e-5, 1.0, 10), "
            "'opacus' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    acc = RDPAccountant()
    acc.history = [(1.2, 0.5, 10)]
    assert float(out[0]) == pytest.approx(acc.get_epsilon(delta=1e-5), rel=1e-12)
    assert float(out[1]) == pytest.approx(dp.noise_for_epsilon(4.0, 1e-5, 1.0, 10), rel=1e-12)
    assert out[2] == "False"
