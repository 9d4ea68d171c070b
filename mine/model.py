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

import collections
import dataclasses
import json
import math
import struct
from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np
import torch
from safetensors.torch import load as _st_load

from mine.errors import ValidationError, VaultError

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

# --------------------------------------------------------------------------------------------
# Limits
# --------------------------------------------------------------------------------------------

#: Largest manifest JSON accepted (bytes).
MAX_MANIFEST_BYTES: Final = 1 << 20
#: Most layers a manifest may declare.
MAX_LAYERS: Final = 64
#: Widest layer / most input features.
MAX_WIDTH: Final = 8192
#: Longest name, feature name or target name (characters).
MAX_NAME_CHARS: Final = 128
#: Default and ceiling of ``max_weight_bytes``.
DEFAULT_MAX_WEIGHT_BYTES: Final = 16 << 20
MAX_WEIGHT_BYTES_CEILING: Final = 256 << 20
#: Limits on update / weights metadata (string → string).
MAX_METADATA_ENTRIES: Final = 64
MAX_METADATA_KEY_CHARS: Final = 64
MAX_METADATA_VALUE_CHARS: Final = 1024
#: Bounds on normalization statistics (kept well inside float32 range).
MIN_STD: Final = 1e-12
MAX_NORM_VALUE: Final = 1e30
#: Bound on a safetensors JSON header (tensor table + metadata).
MAX_HEADER_BYTES: Final = 1 << 20

TASKS: Final = ("classification", "regression")
LOSSES: Final = {"classification": "cross_entropy", "regression": "mse"}
METRICS: Final = {"classification": "accuracy", "regression": "mse"}
OPTIMIZERS: Final = ("sgd", "adam")
DEFAULT_TRAINING: Final[dict[str, Any]] = {"epochs": 5, "lr": 0.01, "batch_size": 32, "optimizer": "adam"}

_TOP_KEYS: Final = frozenset(
    {"name", "task", "features", "target", "num_classes", "normalization", "layers", "loss", "metric",
     "training", "max_weight_bytes"}
)
_REQUIRED_TOP_KEYS: Final = ("name", "task", "features", "target", "layers", "loss", "metric")


class UnreadableError(ValidationError):
    """The bytes are not a safetensors file at all (truncated, bad header, not JSON)."""


# --------------------------------------------------------------------------------------------
# Layer whitelist
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Arg:
    kind: type  # int, float or bool
    default: Any = None  # None = required
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False


#: The only modules a manifest may use, each with its allowed keyword arguments and bounds.
LAYERS: Final[dict[str, dict[str, _Arg]]] = {
    "Linear": {
        "in_features": _Arg(int, None, 1, MAX_WIDTH),
        "out_features": _Arg(int, None, 1, MAX_WIDTH),
        "bias": _Arg(bool, True),
    },
    "ReLU": {},
    "Tanh": {},
    "Sigmoid": {},
    "Dropout": {"p": _Arg(float, 0.5, 0.0, 1.0, hi_open=True)},
    "LayerNorm": {
        "normalized_shape": _Arg(int, None, 1, MAX_WIDTH),
        "eps": _Arg(float, 1e-5, 0.0, 1.0, lo_open=True),
        "elementwise_affine": _Arg(bool, True),
    },
}


def _check_arg(where: str, key: str, spec: _Arg, value: Any) -> Any:
    if spec.kind is bool:
        if not isinstance(value, bool):
            raise ValidationError(f"{where}: {key!r} must be true or false, got {value!r}")
        return value
    if spec.kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError(f"{where}: {key!r} must be an integer, got {value!r}")
        out: float = value
    else:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValidationError(f"{where}: {key!r} must be a number, got {value!r}")
        out = float(value)
        if not math.isfinite(out):
            raise ValidationError(f"{where}: {key!r} must be finite, got {value!r}")
    if spec.lo is not None and (out < spec.lo or (spec.lo_open and out == spec.lo)):
        raise ValidationError(
            f"{where}: {key!r}={value!r} is out of range; it must be {'>' if spec.lo_open else '>='} {spec.lo}"
        )
    if spec.hi is not None and (out > spec.hi or (spec.hi_open and out == spec.hi)):
        raise ValidationError(
            f"{where}: {key!r}={value!r} is out of range; it must be {'<' if spec.hi_open else '<='} {spec.hi}"
        )
    return out


def _normalize_layer(index: int, layer: Any) -> dict[str, Any]:
    """Check one layer spec against the whitelist; return it with defaults filled in."""
    where = f"layers[{index}]"
    if not isinstance(layer, Mapping):
        raise ValidationError(f"{where} must be an object like {{\"type\": \"Linear\", ...}}, got {layer!r}")
    kind = layer.get("type")
    if kind not in LAYERS:
        raise ValidationError(
            f"{where}: unknown layer type {kind!r}; allowed types are {', '.join(sorted(LAYERS))}"
        )
    allowed = LAYERS[kind]
    unknown = sorted(set(layer) - set(allowed) - {"type"})
    if unknown:
        raise ValidationError(
            f"{where} ({kind}): unknown argument(s) {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(sorted(allowed)) or 'none'}"
        )
    out: dict[str, Any] = {"type": kind}
    for key, spec in allowed.items():
        if key in layer:
            out[key] = _check_arg(f"{where} ({kind})", key, spec, layer[key])
        elif spec.default is None:
            raise ValidationError(f"{where} ({kind}): missing required argument {key!r}")
        else:
            out[key] = spec.default
    return out


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


def _layer_params(index: int, spec: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    kind = spec["type"]
    if kind == "Linear":
        shapes = {f"{index}.weight": (spec["out_features"], spec["in_features"])}
        if spec["bias"]:
            shapes[f"{index}.bias"] = (spec["out_features"],)
        return shapes
    if kind == "LayerNorm" and spec["elementwise_affine"]:
        n = spec["normalized_shape"]
        return {f"{index}.weight": (n,), f"{index}.bias": (n,)}
    return {}


# --------------------------------------------------------------------------------------------
# Manifest
# --------------------------------------------------------------------------------------------


def _check_name(what: str, value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_NAME_CHARS:
        raise ValidationError(f"{what} must be a non-empty string of at most {MAX_NAME_CHARS} characters, got {value!r}")
    if any(ord(c) < 32 for c in value):
        raise ValidationError(f"{what} must not contain control characters (newline, tab ...): {value!r}")
    return value


def _float_list(what: str, value: Any, n: int) -> list[float]:
    if not isinstance(value, (list, tuple)) or len(value) != n:
        raise ValidationError(f"{what} must be a list of {n} numbers (one per feature), got "
                              f"{type(value).__name__} of length {len(value) if hasattr(value, '__len__') else '?'}")
    out = []
    for i, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
            raise ValidationError(f"{what}[{i}] must be a number, got {v!r}")
        f = float(v)
        if not math.isfinite(f):
            raise ValidationError(f"{what}[{i}] must be finite, got {v!r}")
        out.append(f)
    return out


@dataclasses.dataclass(frozen=True)
class Manifest:
    """A validated model manifest. Construct with :meth:`from_json` (untrusted bytes) or directly.

    Fields: ``name``; ``task`` (``"classification"`` | ``"regression"``); ``features`` (the ordered
    input schema — a miner's dataset must have these columns); ``target`` (label column);
    ``num_classes`` (classification only, else ``None``); ``normalization`` (``{"mean": [...],
    "std": [...]}`` applied to inputs before the model, or ``None``); ``layers`` (whitelisted
    modules, see :data:`LAYERS`); ``loss`` (``"cross_entropy"`` | ``"mse"``, fixed by the task);
    ``metric`` (``"accuracy"`` | ``"mse"``, fixed by the task); ``training`` (default ``epochs``,
    ``lr``, ``batch_size``, ``optimizer`` for miners); ``max_weight_bytes`` (largest weights or
    update file accepted).

    Every instance is validated in ``__post_init__`` and normalised (layer defaults filled in,
    numbers coerced), so ``to_json`` is canonical.
    """

    name: str
    task: str
    features: list[str]
    target: str
    layers: list[dict[str, Any]]
    loss: str
    metric: str
    num_classes: int | None = None
    normalization: dict[str, list[float]] | None = None
    training: dict[str, Any] = dataclasses.field(default_factory=lambda: dict(DEFAULT_TRAINING))
    max_weight_bytes: int = DEFAULT_MAX_WEIGHT_BYTES

    # ----------------------------------------------------------------------------- validation
    def __post_init__(self) -> None:  # noqa: C901 - one linear list of checks
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 - frozen dataclass
        _check_name("manifest 'name'", self.name)
        if self.task not in TASKS:
            raise ValidationError(f"manifest 'task' must be one of {', '.join(TASKS)}, got {self.task!r}")
        if not isinstance(self.features, (list, tuple)) or not self.features:
            raise ValidationError("manifest 'features' must be a non-empty list of column names")
        if len(self.features) > MAX_WIDTH:
            raise ValidationError(f"manifest has {len(self.features)} features; at most {MAX_WIDTH} are allowed")
        feats = [_check_name(f"manifest 'features[{i}]'", f) for i, f in enumerate(self.features)]
        dupes = sorted(f for f, c in collections.Counter(feats).items() if c > 1)
        if dupes:
            raise ValidationError(f"manifest 'features' repeats column name(s) {dupes}; names must be unique")
        set_("features", feats)
        _check_name("manifest 'target'", self.target)
        if self.target in feats:
            raise ValidationError(f"manifest 'target' {self.target!r} is also listed as a feature; remove it from 'features'")

        if self.loss != LOSSES[self.task]:
            raise ValidationError(f"manifest 'loss' for a {self.task} task must be {LOSSES[self.task]!r}, got {self.loss!r}")
        if self.metric != METRICS[self.task]:
            raise ValidationError(
                f"manifest 'metric' for a {self.task} task must be {METRICS[self.task]!r}, got {self.metric!r}")

        if self.task == "classification":
            nc = self.num_classes
            if isinstance(nc, bool) or not isinstance(nc, int) or not 2 <= nc <= MAX_WIDTH:
                raise ValidationError(
                    f"manifest 'num_classes' must be an integer between 2 and {MAX_WIDTH} for classification, got {nc!r}")
            out_width = nc
        else:
            if self.num_classes is not None:
                raise ValidationError("manifest 'num_classes' must be null for a regression task")
            out_width = 1

        if self.normalization is not None:
            norm = self.normalization
            if not isinstance(norm, Mapping) or set(norm) != {"mean", "std"}:
                raise ValidationError("manifest 'normalization' must be null or an object with exactly 'mean' and 'std'")
            mean = _float_list("normalization 'mean'", norm["mean"], len(feats))
            std = _float_list("normalization 'std'", norm["std"], len(feats))
            bad = [i for i, s in enumerate(std) if not MIN_STD <= s <= MAX_NORM_VALUE]
            if bad:
                raise ValidationError(
                    f"normalization 'std' must be between {MIN_STD:g} and {MAX_NORM_VALUE:g} for every feature; "
                    f"feature(s) {[feats[i] for i in bad[:5]]} are not (use 1.0 for constant columns)")
            bad = [i for i, m in enumerate(mean) if abs(m) > MAX_NORM_VALUE]
            if bad:
                raise ValidationError(
                    f"normalization 'mean' must lie within +-{MAX_NORM_VALUE:g}; feature(s) "
                    f"{[feats[i] for i in bad[:5]]} do not")
            set_("normalization", {"mean": mean, "std": std})

        # layers: whitelist + shape chaining
        if not isinstance(self.layers, (list, tuple)) or not self.layers:
            raise ValidationError("manifest 'layers' must be a non-empty list of layer objects")
        if len(self.layers) > MAX_LAYERS:
            raise ValidationError(f"manifest declares {len(self.layers)} layers; at most {MAX_LAYERS} are allowed")
        layers = [_normalize_layer(i, layer) for i, layer in enumerate(self.layers)]
        width = len(feats)
        seen_linear = False
        for i, spec in enumerate(layers):
            if spec["type"] == "Linear":
                if spec["in_features"] != width:
                    what = ("the number of features" if not seen_linear
                            else "the previous Linear layer's out_features")
                    raise ValidationError(
                        f"layers[{i}] (Linear): in_features={spec['in_features']} does not match {what} ({width})")
                width = spec["out_features"]
                seen_linear = True
            elif spec["type"] == "LayerNorm" and spec["normalized_shape"] != width:
                raise ValidationError(
                    f"layers[{i}] (LayerNorm): normalized_shape={spec['normalized_shape']} does not match the "
                    f"width at that point ({width})")
        if not seen_linear:
            raise ValidationError("manifest 'layers' must contain at least one Linear layer")
        if width != out_width:
            want = f"num_classes ({out_width})" if self.task == "classification" else "1 (regression)"
            raise ValidationError(f"the last Linear layer has out_features={width}; it must equal {want}")
        set_("layers", layers)

        # training defaults
        tr = self.training
        if not isinstance(tr, Mapping):
            raise ValidationError("manifest 'training' must be an object with epochs, lr, batch_size, optimizer")
        unknown = sorted(set(tr) - set(DEFAULT_TRAINING) - {"dp"})
        if unknown:
            raise ValidationError(
                f"manifest 'training' has unknown key(s) {unknown}; allowed: {sorted([*DEFAULT_TRAINING, 'dp'])}")
        merged = {**DEFAULT_TRAINING, **tr}
        if "dp" in merged:  # the DP-SGD defaults for miners (checked fully by mine.dp.DPSettings.from_dict)
            dp = merged["dp"]
            if not isinstance(dp, Mapping) or len(dp) > 16 or not all(
                    isinstance(k, str) and (v is None or isinstance(v, (int, float, str))) for k, v in dp.items()):
                raise ValidationError("manifest 'training.dp' must be an object of DP settings (numbers or names)")
            merged["dp"] = dict(dp)
        merged["epochs"] = int(_check_arg("training", "epochs", _Arg(int, None, 1, 10_000), merged["epochs"]))
        merged["lr"] = _check_arg("training", "lr", _Arg(float, None, 0.0, 10.0, lo_open=True), merged["lr"])
        merged["batch_size"] = int(_check_arg("training", "batch_size", _Arg(int, None, 1, 1 << 20), merged["batch_size"]))
        if merged["optimizer"] not in OPTIMIZERS:
            raise ValidationError(f"training 'optimizer' must be one of {', '.join(OPTIMIZERS)}, got {merged['optimizer']!r}")
        set_("training", merged)

        mwb = self.max_weight_bytes
        if isinstance(mwb, bool) or not isinstance(mwb, int) or not 1 <= mwb <= MAX_WEIGHT_BYTES_CEILING:
            raise ValidationError(
                f"manifest 'max_weight_bytes' must be an integer between 1 and {MAX_WEIGHT_BYTES_CEILING}, got {mwb!r}")
        need = self.weight_bytes_estimate
        if need > mwb:
            raise ValidationError(
                f"the model's weights take about {need} bytes, more than max_weight_bytes={mwb}; "
                "use a smaller model or raise max_weight_bytes")

    # ----------------------------------------------------------------------------- properties
    @property
    def higher_is_better(self) -> bool:
        """True for accuracy, False for an error metric such as MSE."""
        return self.metric == "accuracy"

    @property
    def output_width(self) -> int:
        """Width of the model output: ``num_classes`` or 1."""
        return self.num_classes if self.num_classes is not None else 1

    @property
    def parameter_count(self) -> int:
        """Number of scalar parameters of the model."""
        return sum(math.prod(s) for s in parameter_shapes(self).values())

    @property
    def weight_bytes_estimate(self) -> int:
        """Upper bound of the safetensors size of this model's weights (without metadata)."""
        shapes = parameter_shapes(self)
        return 4 * sum(math.prod(s) for s in shapes.values()) + 8 + 64 + 96 * len(shapes)

    # ----------------------------------------------------------------------------- (de)serialise
    def to_dict(self) -> dict[str, Any]:
        """The manifest as plain JSON-able data (all keys present, defaults filled in)."""
        return {
            "name": self.name,
            "task": self.task,
            "features": list(self.features),
            "target": self.target,
            "num_classes": self.num_classes,
            "normalization": None if self.normalization is None else {
                "mean": list(self.normalization["mean"]), "std": list(self.normalization["std"])},
            "layers": [dict(layer) for layer in self.layers],
            "loss": self.loss,
            "metric": self.metric,
            "training": dict(self.training),
            "max_weight_bytes": self.max_weight_bytes,
        }

    def to_json(self) -> bytes:
        """Canonical JSON: sorted keys, no whitespace, UTF-8. Equal manifests give equal bytes."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False).encode("utf-8")

    @classmethod
    def from_dict(cls, data: Any) -> Manifest:
        """Validate plain data (as parsed from JSON) into a manifest."""
        if not isinstance(data, Mapping):
            raise ValidationError(f"a manifest must be a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - _TOP_KEYS)
        if unknown:
            raise ValidationError(f"manifest has unknown key(s) {unknown}; allowed keys: {sorted(_TOP_KEYS)}")
        missing = [k for k in _REQUIRED_TOP_KEYS if k not in data]
        if missing:
            raise ValidationError(f"manifest is missing required key(s) {missing}")
        kwargs = dict(data)
        if kwargs.get("training") is None:
            kwargs.pop("training", None)
        if "max_weight_bytes" in kwargs and kwargs["max_weight_bytes"] is None:
            kwargs.pop("max_weight_bytes")
        return cls(**kwargs)

    @classmethod
    def from_json(cls, data: bytes | str) -> Manifest:
        """Parse and validate manifest JSON from an untrusted source.

        Raises :class:`ValidationError` naming the problem: not UTF-8/JSON, duplicate keys,
        NaN/Infinity, unknown layer or argument, shapes that do not chain, size limits.
        """
        if isinstance(data, str):
            data = data.encode("utf-8")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ValidationError(f"manifest must be bytes, got {type(data).__name__}")
        if len(data) > MAX_MANIFEST_BYTES:
            raise ValidationError(f"manifest is {len(data)} bytes; at most {MAX_MANIFEST_BYTES} are allowed")
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValidationError(f"manifest is not UTF-8 text ({exc}); it must be a JSON document") from None
        parsed = _strict_json(text, "manifest")
        return cls.from_dict(parsed)


def _strict_json(text: str, what: str) -> Any:
    def no_dupes(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in pairs:
            if k in out:
                raise ValidationError(f"{what} JSON repeats the key {k!r}")
            out[k] = v
        return out

    def no_const(name: str) -> Any:
        raise ValidationError(f"{what} JSON contains {name}, which is not valid JSON; use finite numbers")

    try:
        return json.loads(text, object_pairs_hook=no_dupes, parse_constant=no_const)
    except ValidationError:
        raise
    except ValueError as exc:  # JSONDecodeError, or an integer literal beyond Python's digit limit
        raise ValidationError(f"{what} is not valid JSON: {exc}") from None
    except RecursionError:
        raise ValidationError(f"{what} JSON is nested too deeply") from None


def parameter_shapes(manifest: Manifest) -> dict[str, tuple[int, ...]]:
    """The parameter names and shapes of ``build_model(manifest)``, computed without building it."""
    shapes: dict[str, tuple[int, ...]] = {}
    for i, spec in enumerate(manifest.layers):
        shapes.update(_layer_params(i, spec))
    return shapes


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
        header = _strict_json(text, "safetensors header")
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
