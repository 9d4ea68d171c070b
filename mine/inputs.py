"""From a dataset's arrays to the tensors a manifest's model takes: inputs and targets.

Inputs are normalised by the client, not by the model: ``x' = (x - mean) / std`` with the
manifest's float32 statistics, once for the whole array. A manifest whose first layer is an
``Embedding`` takes its features as integer token ids instead (int64, checked against the vocabulary).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mine.errors import VaultError
from mine.manifest import Manifest

__all__ = ["prepare_inputs", "prepare_targets"]


def _as_tensor(a: Any, what: str) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a.detach()
    arr = np.asarray(a)
    if arr.dtype.kind not in "biuf":
        raise VaultError(f"{what} must be a numeric array, got dtype {arr.dtype}; convert the data to numbers first")
    return torch.from_numpy(np.ascontiguousarray(arr))


def prepare_inputs(manifest: Manifest, X: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``X`` as a contiguous float32 tensor, normalised with the manifest's statistics.

    ``X`` must be 2-D with one column per manifest feature, in manifest order, all finite. The
    arithmetic is ``(X - mean) / std`` in float32, done once for the whole array.
    """
    t = _as_tensor(X, "inputs")
    if t.ndim != 2 or t.shape[1] != len(manifest.features):
        raise VaultError(
            f"inputs have shape {tuple(t.shape)}; the model expects (rows, {len(manifest.features)}) "
            "with one column per manifest feature")
    if not t.is_floating_point() and t.dtype not in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8):
        raise VaultError(f"inputs must be numeric, got dtype {t.dtype}")
    if manifest.token_inputs:
        return _token_ids(manifest, t)
    t = t.to(torch.float32)
    if manifest.normalization is not None:
        mean = torch.tensor(manifest.normalization["mean"], dtype=torch.float32)
        std = torch.tensor(manifest.normalization["std"], dtype=torch.float32)
        t = (t - mean) / std
    # one check covers both: NaN/inf inputs stay non-finite after normalising (std is finite, > 0)
    if not bool(torch.isfinite(t).all()):
        raise VaultError("inputs contain NaN or infinite values (or overflow float32 once normalized); "
                         "clean the dataset or check its units against the manifest")
    return t.contiguous()


def prepare_targets(manifest: Manifest, y: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Targets as int64 class indices (classification, checked in range) or float32 (regression)."""
    t = _as_tensor(y, "targets")
    if t.ndim == 2 and t.shape[1] == 1:
        t = t[:, 0]
    if t.ndim != 1:
        raise VaultError(f"targets must be 1-D, got shape {tuple(t.shape)}")
    if manifest.task == "classification":
        if t.is_floating_point():
            if not bool(torch.isfinite(t).all()) or not bool((t == t.round()).all()):
                raise VaultError("classification targets must be integer class indices")
        t = t.to(torch.int64)
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= manifest.output_width):
            raise VaultError(
                f"classification targets must lie in 0..{manifest.output_width - 1}, found "
                f"{int(t.min())}..{int(t.max())}")
        return t.contiguous()
    t = t.to(torch.float32)
    if not bool(torch.isfinite(t).all()):
        raise VaultError("regression targets contain NaN or infinite values")
    return t.contiguous()


# --------------------------------------------------------------------------------------------


def _token_ids(manifest: Manifest, t: torch.Tensor) -> torch.Tensor:
    """Integer token ids for a manifest whose first layer is an Embedding (checked in range)."""
    vocab = int(manifest.layers[0]["num_embeddings"])
    if t.is_floating_point():
        if not bool(torch.isfinite(t).all()) or not bool((t == t.round()).all()):
            raise VaultError("this model starts with an Embedding: every feature must be an integer token id")
    t = t.to(torch.int64)
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= vocab):
        raise VaultError(f"token ids must lie in 0..{vocab - 1} (the Embedding's num_embeddings), found "
                         f"{int(t.min())}..{int(t.max())}")
    return t.contiguous()
