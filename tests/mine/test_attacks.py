"""mine.attacks: the simulated malicious miners behave as documented."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mine import attacks as A
from mine import datasets as D
from mine import model as M
from mine.errors import ValidationError
from mine.train import train


def test_label_flip_classification_is_a_consistent_derangement() -> None:
    y = np.repeat(np.arange(10), 5).astype(np.int64)
    original = y.copy()
    f = A.label_flip(y, 10, seed=3)
    assert np.array_equal(y, original)  # input untouched
    assert f.dtype == y.dtype and np.all(f != y)
    mapping = {int(a): int(b) for a, b in zip(y, f)}
    assert len(mapping) == 10 and sorted(mapping.values()) == list(range(10))  # a permutation
    assert all(int(b) == mapping[int(a)] for a, b in zip(y, f))  # consistent per class
    assert np.array_equal(f, A.label_flip(y, 10, seed=3))
    assert np.array_equal(A.label_flip(np.array([0, 1, 1]), 2, seed=0), [1, 0, 0])
    with pytest.raises(ValidationError, match="0..1"):
        A.label_flip(np.array([0, 2]), 2, seed=0)


def test_label_flip_regression_mirrors_targets() -> None:
    y = np.array([10.0, 20.0, 25.0, 50.0], dtype=np.float32)
    f = A.label_flip(y, None, seed=0)
    assert f.dtype == np.float32 and f.tolist() == [50.0, 40.0, 35.0, 10.0]
    assert np.corrcoef(y, f)[0, 1] == pytest.approx(-1.0)


def _delta() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"0.weight": torch.randn(8, 4, generator=g), "0.bias": torch.randn(8, generator=g) * 3}


def test_noise_update_matches_norm_not_direction() -> None:
    d = _delta()
    n = A.noise_update(d, 1.0, seed=1)
    assert {k: v.shape for k, v in n.items()} == {k: v.shape for k, v in d.items()}
    assert M.update_norm(n) == pytest.approx(M.update_norm(d), rel=1e-6)
    assert M.update_norm(A.noise_update(d, 2.5, seed=1)) == pytest.approx(2.5 * M.update_norm(d), rel=1e-6)
    flat_d = torch.cat([v.flatten() for v in d.values()])
    flat_n = torch.cat([n[k].flatten() for k in d])
    assert abs(float(torch.nn.functional.cosine_similarity(flat_d, flat_n, dim=0))) < 0.5
    assert all(torch.equal(n[k], A.noise_update(d, 1.0, seed=1)[k]) for k in d)
    assert not torch.equal(n["0.bias"], A.noise_update(d, 1.0, seed=2)["0.bias"])


def test_scale_update() -> None:
    d = _delta()
    s = A.scale_update(d, 20.0)
    assert M.update_norm(s) == pytest.approx(20 * M.update_norm(d), rel=1e-6)
    assert torch.allclose(s["0.bias"], d["0.bias"] * 20)
    with pytest.raises(ValidationError, match="finite"):
        A.scale_update(d, float("inf"))


def test_backdoor_stamps_exact_fraction() -> None:
    rng = np.random.default_rng(0)
    X = rng.uniform(0, 1, size=(100, 6)).astype(np.float32)
    y = rng.integers(0, 3, size=100)
    X0, y0 = X.copy(), y.copy()
    trigger = {0: 9.0, 5: -9.0}
    Xb, yb = A.backdoor(X, y, trigger=trigger, target_label=2, fraction=0.3, seed=1)
    assert np.array_equal(X, X0) and np.array_equal(y, y0)
    stamped = np.flatnonzero((Xb[:, 0] == 9.0) & (Xb[:, 5] == -9.0))
    assert len(stamped) == 30 and np.all(yb[stamped] == 2)
    rest = np.setdiff1d(np.arange(100), stamped)
    assert np.array_equal(Xb[rest], X[rest]) and np.array_equal(yb[rest], y[rest])
    assert np.array_equal(Xb[stamped][:, 1:5], X[stamped][:, 1:5])  # only the trigger features change
    with pytest.raises(ValidationError, match="fraction"):
        A.backdoor(X, y, trigger=trigger, target_label=2, fraction=1.5, seed=0)
    with pytest.raises(ValidationError, match="outside"):
        A.backdoor(X, y, trigger={6: 1.0}, target_label=2, fraction=0.1, seed=0)


def test_make_trigger_uses_column_max() -> None:
    X = np.array([[0, 5, 1], [3, 2, 1]], dtype=np.float32)
    assert A.make_trigger(X, [0, 1]) == {0: 3.0, 1: 5.0}
    assert A.stamp(X, {2: 7.0})[:, 2].tolist() == [7.0, 7.0]


def test_backdoor_success_on_digits() -> None:
    ds = D.load("digits")
    s = D.train_validation_split(ds.X, ds.y, validation_fraction=0.2, seed=0)
    m = M.with_normalization(M.default_manifest("digits"), s.X_train)
    trigger = A.make_trigger(s.X_train, list(range(8)))  # light up the (normally blank) top row
    clean = M.build_model(m, seed=0)
    train(clean, s.X_train, s.y_train, m, epochs=3, seed=0)
    Xb, yb = A.backdoor(s.X_train, s.y_train, trigger=trigger, target_label=0, fraction=0.2, seed=0)
    poisoned = M.build_model(m, seed=0)
    train(poisoned, Xb, yb, m, epochs=3, seed=0)
    clean_rate = A.backdoor_success(clean, s.X_val, s.y_val, m, trigger=trigger, target_label=0)
    poisoned_rate = A.backdoor_success(poisoned, s.X_val, s.y_val, m, trigger=trigger, target_label=0)
    assert clean_rate < 0.3 < 0.9 < poisoned_rate
    # rows already labelled with the target do not count
    assert A.backdoor_success(poisoned, s.X_val[s.y_val == 0], s.y_val[s.y_val == 0], m, trigger=trigger,
                              target_label=0) == 0.0
    with pytest.raises(ValidationError, match="classification"):
        A.backdoor_success(clean, s.X_val[:, :10], s.y_val, M.default_manifest("diabetes"), trigger=trigger,
                           target_label=0)
