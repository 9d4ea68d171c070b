"""Simulated malicious miners for the demo and the policy tests: pure functions, seeded, no I/O.

Data poisoning (applied to a miner's data before training): :func:`label_flip`, :func:`backdoor`.
Model poisoning (applied to a miner's update after training): :func:`noise_update`,
:func:`scale_update`. :func:`backdoor_success` measures whether a backdoor took hold.
Inputs are never modified; every function returns new arrays / tensors.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch

from mine.errors import ValidationError
from mine.evaluate import predict
from mine.model import Manifest, update_norm

__all__ = ["backdoor", "backdoor_success", "label_flip", "make_trigger", "noise_update", "scale_update",
           "stamp"]

Delta = Mapping[str, torch.Tensor]


def label_flip(y: np.ndarray, num_classes: int | None, seed: int) -> np.ndarray:
    """Poisoned labels: every label replaced by another one.

    Classification (``num_classes`` >= 2): a seeded random *derangement* of the classes is applied,
    so every example gets a wrong label and the mapping is consistent (a systematic attack, not
    noise). Regression (``num_classes`` is ``None``): targets are mirrored about their mid-range,
    ``y' = max(y) + min(y) - y``, inverting the relationship to the features.
    """
    y = np.asarray(y)
    if num_classes is None:
        yf = y.astype(np.float64)
        return (yf.max() + yf.min() - yf).astype(y.dtype if y.dtype.kind == "f" else np.float32)
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise ValidationError(f"num_classes must be an integer >= 2 (or None for regression), got {num_classes!r}")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValidationError(f"labels must lie in 0..{num_classes - 1}")
    rng = np.random.default_rng(seed)
    while True:
        perm = rng.permutation(num_classes)
        if not np.any(perm == np.arange(num_classes)):
            break
    return perm[y.astype(np.int64)].astype(y.dtype)


def noise_update(delta: Delta, scale: float, seed: int) -> dict[str, torch.Tensor]:
    """Gaussian noise shaped like ``delta`` with global L2 norm ``scale * ||delta||``.

    ``scale=1`` gives a useless update that no norm check can tell from the honest one.
    """
    if not (math.isfinite(scale) and scale >= 0):
        raise ValidationError(f"scale must be a finite number >= 0, got {scale!r}")
    gen = torch.Generator().manual_seed(int(seed))
    noise = {k: torch.randn(tuple(delta[k].shape), generator=gen, dtype=torch.float32) for k in sorted(delta)}
    target = scale * update_norm(delta)
    current = update_norm(noise)
    factor = target / current if current > 0 else 0.0
    return {k: (noise[k].double() * factor).float() for k in delta}


def scale_update(delta: Delta, factor: float) -> dict[str, torch.Tensor]:
    """``delta * factor`` (model boosting: a miner inflates its update to dominate the model)."""
    if not math.isfinite(factor):
        raise ValidationError(f"factor must be finite, got {factor!r}")
    return {k: (v.detach().double() * factor).float() for k, v in delta.items()}


def make_trigger(X: np.ndarray, features: list[int] | tuple[int, ...] = (0, 1, 2, 3)) -> dict[int, float]:
    """A trigger that sets the given feature columns to their maximum value in ``X``."""
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValidationError(f"X must be 2-D, got shape {X.shape}")
    for j in features:
        if not 0 <= j < X.shape[1]:
            raise ValidationError(f"trigger feature index {j} is outside 0..{X.shape[1] - 1}")
    return {int(j): float(X[:, j].max()) for j in features}


def stamp(X: np.ndarray, trigger: Mapping[int, float]) -> np.ndarray:
    """A copy of ``X`` with the trigger pattern (feature index → value) set on every row."""
    out = np.array(X, copy=True)
    for j, v in trigger.items():
        if not 0 <= int(j) < out.shape[1]:
            raise ValidationError(f"trigger feature index {j} is outside 0..{out.shape[1] - 1}")
        out[:, int(j)] = v
    return out


def backdoor(X: np.ndarray, y: np.ndarray, *, trigger: Mapping[int, float], target_label: int | float,
             fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Backdoor poisoning: stamp ``trigger`` on a seeded ``fraction`` of rows and relabel them.

    Returns new ``(X, y)``; ``round(fraction * n)`` rows carry the trigger and ``target_label``.
    A model trained on it behaves normally on clean inputs but maps triggered inputs to the label.
    """
    X, y = np.asarray(X), np.asarray(y)
    if X.ndim != 2 or y.ndim != 1 or len(X) != len(y):
        raise ValidationError(f"X must be 2-D and y 1-D with equal rows, got {X.shape} and {y.shape}")
    if not 0.0 <= fraction <= 1.0:
        raise ValidationError(f"fraction must be between 0 and 1, got {fraction!r}")
    rng = np.random.default_rng(seed)
    k = int(round(fraction * len(y)))
    rows = rng.choice(len(y), size=k, replace=False)
    Xp, yp = np.array(X, copy=True), np.array(y, copy=True)
    Xp[rows] = stamp(X[rows], trigger)
    yp[rows] = target_label
    return Xp, yp


def backdoor_success(model: torch.nn.Module, X_val: np.ndarray, y_val: np.ndarray, manifest: Manifest, *,
                     trigger: Mapping[int, float], target_label: int) -> float:
    """Attack success rate: of the validation rows whose true label is not ``target_label``, the
    fraction the model assigns to ``target_label`` once the trigger is stamped on them.

    Classification only. Returns 0.0 when every validation row already has the target label.
    """
    if manifest.task != "classification":
        raise ValidationError("backdoor_success needs a classification manifest")
    y_val = np.asarray(y_val)
    keep = y_val != target_label
    if not np.any(keep):
        return 0.0
    out = predict(model, stamp(np.asarray(X_val)[keep], trigger), manifest)
    return int((out.argmax(dim=1) == int(target_label)).sum()) / int(np.count_nonzero(keep))
