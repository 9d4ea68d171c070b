"""Updates: a weight delta ``trained - base`` as safetensors with string metadata, and its arithmetic.

On the wire an update is a safetensors file whose string metadata carries the base version and
what the protocol asks for (see the design); :func:`read_update` validates untrusted bytes like
:func:`mine.weights.load_weights`. :func:`update_norm` and :func:`apply_update` are reproducible
(float64, fixed summation order).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch

from mine.errors import ValidationError
from mine.manifest import Manifest
from mine.weights import (MAX_METADATA_ENTRIES, MAX_METADATA_KEY_CHARS, MAX_METADATA_VALUE_CHARS, state_to_bytes,
                          validate_tensor_file)

__all__ = ["apply_update", "make_update", "read_update", "update_norm"]


def make_update(base: Mapping[str, torch.Tensor], trained: Mapping[str, torch.Tensor],
                metadata: Mapping[str, str]) -> bytes:
    """The update ``trained - base`` as safetensors bytes with string ``metadata``.

    Conventional metadata keys: ``base_version`` (model version trained from), ``examples`` (local
    examples used), and local metrics such as ``loss`` / ``metric``, all as strings.
    """
    if set(base) != set(trained):
        raise ValidationError(
            f"base and trained states differ in parameter names: {sorted(set(base) ^ set(trained))[:8]}")
    delta = {}
    for k in base:
        b, t = base[k].detach().to(torch.float32), trained[k].detach().to(torch.float32)
        if b.shape != t.shape:
            raise ValidationError(f"parameter {k!r} has shape {tuple(b.shape)} in base and {tuple(t.shape)} in trained")
        delta[k] = (t - b).cpu()
    return state_to_bytes(delta, metadata=dict(metadata))


def read_update(manifest: Manifest, data: bytes, *, max_bytes: int | None = None
                ) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Validate untrusted update bytes like :func:`load_weights`; return ``(delta, metadata)``.

    ``max_bytes`` defaults to ``manifest.max_weight_bytes`` plus room for the metadata.
    """
    if max_bytes is None:
        max_bytes = manifest.max_weight_bytes + MAX_METADATA_ENTRIES * (MAX_METADATA_KEY_CHARS + MAX_METADATA_VALUE_CHARS + 8)
    return validate_tensor_file(manifest, data, max_bytes, "update")


def update_norm(delta: Mapping[str, torch.Tensor]) -> float:
    """Global L2 norm of a delta over all tensors, in float64, summed in sorted-name order.

    Uses numpy's pairwise summation (single-threaded), so the value is reproducible.
    """
    total = 0.0
    for k in sorted(delta):
        a = delta[k].detach().cpu().numpy().astype(np.float64, copy=False).ravel()
        total += float(np.sum(np.square(a)))
    return math.sqrt(total)


def apply_update(state: Mapping[str, torch.Tensor], delta: Mapping[str, torch.Tensor], *, scale: float = 1.0,
                 max_norm: float | None = None) -> dict[str, torch.Tensor]:
    """``state + factor * delta`` as a new float32 state; inputs are not modified.

    ``factor = scale * min(1, max_norm / ||delta||)``: the delta is first clipped to global L2 norm
    ``max_norm`` (if given), then scaled by ``scale`` (a server learning rate). The sum is computed
    in float64 and rounded once to float32.
    """
    if set(state) != set(delta):
        raise ValidationError(f"state and delta differ in parameter names: {sorted(set(state) ^ set(delta))[:8]}")
    if not math.isfinite(scale):
        raise ValidationError(f"scale must be finite, got {scale!r}")
    factor = float(scale)
    if max_norm is not None:
        if not (math.isfinite(max_norm) and max_norm >= 0):
            raise ValidationError(f"max_norm must be a finite number >= 0, got {max_norm!r}")
        norm = update_norm(delta)
        if norm > max_norm:
            factor *= max_norm / norm
    out = {}
    for k, s in state.items():
        d = delta[k]
        if s.shape != d.shape:
            raise ValidationError(f"parameter {k!r}: state shape {tuple(s.shape)} != delta shape {tuple(d.shape)}")
        out[k] = (s.detach().to(torch.float64) + factor * d.detach().to(torch.float64)).to(torch.float32)
    return out


# --------------------------------------------------------------------------------------------
