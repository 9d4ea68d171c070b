"""Declarative models: a JSON manifest, a whitelisted ``torch.nn.Sequential``, safetensors weights.

Nothing here executes or unpickles bytes that came from outside. A model is described by a
:class:`Manifest` (canonical JSON, so the same manifest always has the same CID) whose ``layers`` are
drawn from a small whitelist of ``torch.nn`` modules with bounded keyword arguments; weights and
updates travel as safetensors files whose header is checked against the manifest *before* any
tensor is materialised.

Conventions
-----------
* A *state* is a ``dict[str, torch.Tensor]`` with exactly the parameter names of
  ``build_model(manifest).state_dict()`` (``"0.weight"``, ``"0.bias"``, ...), all ``float32``.
* An *update* (a *delta*) is a state-shaped dict of ``trained - base``. On the wire it is a
  safetensors file whose string metadata carries ``base_version``, ``examples`` and local metrics.
* Inputs are normalised by the client, not by the model: ``x' = (x - mean) / std`` with the
  manifest's float32 statistics (see :func:`prepare_inputs`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as _st_load

from mine.errors import ValidationError, VaultError
# Re-exported: the manifest half of this module lives in mine.manifest (importable without torch).
from mine.manifest import (DEFAULT_MAX_WEIGHT_BYTES, DEFAULT_TRAINING, LAYERS, LOSSES, MAX_HEADER_BYTES,  # noqa: F401
                           MAX_LAYERS, MAX_MANIFEST_BYTES, MAX_METADATA_ENTRIES, MAX_METADATA_KEY_CHARS,
                           MAX_METADATA_VALUE_CHARS, MAX_NAME_CHARS, MAX_NORM_VALUE, MAX_WEIGHT_BYTES_CEILING,
                           MAX_WIDTH, METRICS, MIN_STD, OPTIMIZERS, TASKS, Manifest, parameter_shapes, strict_json)

__all__ = [
    "LAYERS",
    "TASKS",
    "Manifest",
    "UnreadableError",
    "apply_update",
    "build_model",
    "default_manifest",
    "load_weights",
    "make_update",
    "model_from_bytes",
    "model_state",
    "parameter_shapes",
    "prepare_inputs",
    "prepare_targets",
    "read_metadata",
    "read_update",
    "state_to_bytes",
    "update_norm",
    "with_normalization",
]


class UnreadableError(ValidationError):
    """The bytes are not a safetensors file at all (truncated, bad header, not JSON)."""


def _layer_module(spec: Mapping[str, Any]) -> torch.nn.Module:
    kind = spec["type"]
    if kind == "Linear":
        return torch.nn.Linear(spec["in_features"], spec["out_features"], bias=spec["bias"])
    if kind == "ReLU":
        return torch.nn.ReLU()
    if kind == "Tanh":
        return torch.nn.Tanh()
    if kind == "Sigmoid":
        return torch.nn.Sigmoid()
    if kind == "Dropout":
        return torch.nn.Dropout(p=spec["p"])
    if kind == "LayerNorm":
        return torch.nn.LayerNorm(spec["normalized_shape"], eps=spec["eps"],
                                  elementwise_affine=spec["elementwise_affine"])
    raise ValidationError(f"unknown layer type {kind!r}")  # unreachable after validation


def build_model(manifest: Manifest, seed: int | None = None) -> torch.nn.Sequential:
    """Build the manifest's ``Sequential`` in float32 on CPU.

    With a ``seed`` the initial weights are a pure function of (manifest, seed, torch version) and
    the global torch RNG is left untouched; with ``None`` the global RNG is used.
    """
    if seed is None:
        return torch.nn.Sequential(*(_layer_module(s) for s in manifest.layers)).float()
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValidationError(f"seed must be an integer or None, got {seed!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torch.nn.Sequential(*(_layer_module(s) for s in manifest.layers)).float()


def model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached float32 copy of a model's parameters, the form used everywhere in this module."""
    return {k: v.detach().to(torch.float32).clone() for k, v in model.state_dict().items()}


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


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
# Weights and updates (safetensors)
# --------------------------------------------------------------------------------------------


def _check_metadata(metadata: Mapping[str, str] | None) -> dict[str, str] | None:
    if metadata is None:
        return None
    if not isinstance(metadata, Mapping):
        raise ValidationError(f"metadata must be a dict of strings, got {type(metadata).__name__}")
    if len(metadata) > MAX_METADATA_ENTRIES:
        raise ValidationError(f"metadata has {len(metadata)} entries; at most {MAX_METADATA_ENTRIES} are allowed")
    out = {}
    for k, v in metadata.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise ValidationError(f"metadata keys and values must be strings; {k!r}: {v!r} is not (use str(...))")
        if not k or len(k) > MAX_METADATA_KEY_CHARS or len(v) > MAX_METADATA_VALUE_CHARS:
            raise ValidationError(
                f"metadata entry {k[:80]!r} is too long (keys 1..{MAX_METADATA_KEY_CHARS}, values "
                f"<= {MAX_METADATA_VALUE_CHARS} characters)")
        out[k] = v
    return out


def state_to_bytes(state: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None) -> bytes:
    """Serialise a state (or delta) to safetensors bytes; the same input always gives the same bytes.

    Tensors are stored as contiguous float32 CPU tensors, keys sorted (by safetensors); ``metadata``
    must map strings to strings.
    """
    if not isinstance(state, Mapping) or not state:
        raise ValidationError("state must be a non-empty dict of name -> tensor")
    tensors = {}
    for k, v in state.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise ValidationError(f"state entry {k!r} must map a string to a torch.Tensor")
        tensors[k] = v.detach().to(device="cpu", dtype=torch.float32).contiguous()
    return _safetensors_bytes(tensors, _check_metadata(metadata))


def _safetensors_bytes(tensors: Mapping[str, torch.Tensor], metadata: dict[str, str] | None) -> bytes:
    """The safetensors format written deterministically (the Rust writer orders metadata by hash).

    Layout: u64-LE header length, a JSON header (sorted keys; tensors as dtype/shape/data_offsets,
    optional ``__metadata__``) padded with spaces to 8 bytes, then the tensors' bytes in name order.
    """
    header: dict[str, Any] = {}
    offset = 0
    blobs = []
    for name in sorted(tensors):
        blob = tensors[name].numpy().astype("<f4", copy=False).tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    if metadata:
        header["__metadata__"] = dict(sorted(metadata.items()))
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + b"".join(blobs)


def _parse_header(data: bytes) -> tuple[dict[str, Any], dict[str, str]]:
    """The safetensors tensor table and metadata, parsed strictly without touching tensor data."""
    if len(data) < 8:
        raise UnreadableError(f"not a safetensors file: only {len(data)} bytes")
    (n,) = struct.unpack("<Q", bytes(data[:8]))
    if n > MAX_HEADER_BYTES or n > len(data) - 8:
        raise UnreadableError(f"not a safetensors file: header length {n} does not fit in {len(data)} bytes")
    try:
        text = bytes(data[8:8 + n]).decode("utf-8")
    except UnicodeDecodeError:
        raise UnreadableError("not a safetensors file: header is not UTF-8") from None
    try:
        header = strict_json(text, "safetensors header")
    except ValidationError as exc:
        raise UnreadableError(str(exc)) from None
    if not isinstance(header, dict):
        raise UnreadableError("not a safetensors file: header is not a JSON object")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict):
        raise UnreadableError("safetensors '__metadata__' must be an object of strings")
    try:
        meta = _check_metadata(meta) or {}
    except ValidationError as exc:
        raise UnreadableError(f"safetensors metadata: {exc}") from None
    return header, meta


def _validate_tensor_file(manifest: Manifest, data: bytes, max_bytes: int | None, what: str
                          ) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValidationError(f"{what} must be bytes, got {type(data).__name__}")
    limit = manifest.max_weight_bytes if max_bytes is None else max_bytes
    if len(data) > limit:
        raise ValidationError(f"{what} is {len(data)} bytes, more than the limit of {limit} bytes")
    header, meta = _parse_header(data)
    expected = parameter_shapes(manifest)
    missing = sorted(set(expected) - set(header))
    extra = sorted(set(header) - set(expected))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing tensor(s) {missing[:8]}")
        if extra:
            parts.append(f"unexpected tensor(s) {extra[:8]}")
        raise ValidationError(f"{what} does not match the manifest's model: {'; '.join(parts)}")
    for name, shape in expected.items():
        entry = header[name]
        if not isinstance(entry, dict):
            raise UnreadableError(f"{what}: header entry for {name!r} is not an object")
        if entry.get("dtype") != "F32":
            raise ValidationError(f"{what}: tensor {name!r} has dtype {entry.get('dtype')!r}; only F32 (float32) is accepted")
        got = entry.get("shape")
        if not isinstance(got, list) or tuple(got) != shape:
            raise ValidationError(f"{what}: tensor {name!r} has shape {got!r}; the manifest's model needs {list(shape)}")
    try:
        tensors = _st_load(bytes(data))
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise UnreadableError(f"{what} is not a valid safetensors file: {exc}") from None
    out: dict[str, torch.Tensor] = {}
    for name in expected:
        t = tensors[name]
        if not bool(torch.isfinite(t).all()):
            raise ValidationError(f"{what}: tensor {name!r} contains NaN or infinite values")
        out[name] = t
    return out, meta


def load_weights(manifest: Manifest, data: bytes, *, max_bytes: int | None = None) -> dict[str, torch.Tensor]:
    """Validate untrusted safetensors weights against the manifest's model and return the state.

    Refuses (``ValidationError``) files over ``max_bytes`` (default: ``manifest.max_weight_bytes``),
    missing/extra tensor names, a shape or dtype other than the built model's float32 parameters,
    and any NaN or infinity. :class:`UnreadableError` (a ``ValidationError``) means the bytes are
    not safetensors at all. The header is checked before any tensor data is read.
    """
    return _validate_tensor_file(manifest, data, max_bytes, "weights file")[0]


def model_from_bytes(manifest: Manifest, data: bytes, *, max_bytes: int | None = None) -> torch.nn.Sequential:
    """Build the manifest's model and load validated weights into it (see :func:`load_weights`)."""
    model = build_model(manifest, seed=0)
    model.load_state_dict(load_weights(manifest, data, max_bytes=max_bytes), strict=True)
    return model


def read_metadata(data: bytes) -> dict[str, str]:
    """Only the string metadata of a safetensors file (validated size), without loading tensors."""
    return _parse_header(data)[1]


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
    return _validate_tensor_file(manifest, data, max_bytes, "update")


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
# Standard manifests for the bundled datasets
# --------------------------------------------------------------------------------------------


def with_normalization(manifest: Manifest, X: np.ndarray) -> Manifest:
    """A copy of ``manifest`` whose normalization is the column mean/std of the owner's ``X``.

    Statistics are computed in float64 (population std); constant columns get std 1.0.
    """
    a = np.asarray(X, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != len(manifest.features) or a.shape[0] == 0:
        raise ValidationError(
            f"X has shape {a.shape}; expected (rows >= 1, {len(manifest.features)}) in manifest feature order")
    if not np.isfinite(a).all():
        raise ValidationError("X contains NaN or infinite values; clean it before computing normalization")
    mean = a.mean(axis=0)
    std = a.std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)
    return dataclasses.replace(manifest, normalization={"mean": [float(v) for v in mean],
                                                       "std": [float(v) for v in std]})


def _mlp(widths: Sequence[int], dropout: float = 0.0) -> list[dict[str, Any]]:
    layers: list[dict[str, Any]] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append({"type": "Linear", "in_features": a, "out_features": b})
        if i < len(widths) - 2:
            layers.append({"type": "ReLU"})
            if dropout:
                layers.append({"type": "Dropout", "p": dropout})
    return layers


def default_manifest(dataset: str) -> Manifest:
    """The standard manifest for a bundled dataset (without normalization; see :func:`with_normalization`).

    * ``digits``: 64 pixels → MLP 64-32-10, cross entropy, accuracy.
    * ``breast_cancer``: 30 features → MLP 30-16-2, cross entropy, accuracy.
    * ``diabetes``: 10 features → linear 10-1, MSE.
    """
    from mine import datasets  # local import: datasets does not depend on model

    if dataset not in datasets.DATASETS:
        raise ValidationError(f"no default manifest for {dataset!r}; choose one of {', '.join(datasets.DATASETS)}")
    features, target = datasets.schema(dataset)
    if dataset == "digits":
        return Manifest(name="digits-mlp", task="classification", features=features, target=target,
                        num_classes=10, layers=_mlp([64, 32, 10]), loss="cross_entropy", metric="accuracy",
                        training={"epochs": 5, "lr": 0.01, "batch_size": 32, "optimizer": "adam"},
                        max_weight_bytes=64 << 10)
    if dataset == "breast_cancer":
        return Manifest(name="breast-cancer-mlp", task="classification", features=features, target=target,
                        num_classes=2, layers=_mlp([30, 16, 2]), loss="cross_entropy", metric="accuracy",
                        training={"epochs": 10, "lr": 0.01, "batch_size": 32, "optimizer": "adam"},
                        max_weight_bytes=16 << 10)
    return Manifest(name="diabetes-linear", task="regression", features=features, target=target,
                    num_classes=None, layers=_mlp([10, 1]), loss="mse", metric="mse",
                    training={"epochs": 20, "lr": 0.05, "batch_size": 32, "optimizer": "sgd"},
                    max_weight_bytes=4 << 10)
