"""Model manifests: the declarative, validated JSON description of a model (no torch here).

A :class:`Manifest` names the input schema, the task and a list of layers drawn from a small
whitelist (:data:`LAYERS`) with bounded keyword arguments. Parsing one from untrusted bytes
(:meth:`Manifest.from_json`) checks every field; building the torch model from it is
:func:`mine.model.build_model`. Kept apart from :mod:`mine.model` so that commands which only read
manifests (``mine bounties``) start without importing torch.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import numbers
from collections.abc import Mapping
from typing import Any, Final

from mine.errors import ValidationError

__all__ = [
    "DEFAULT_MAX_WEIGHT_BYTES", "DEFAULT_TRAINING", "LAYERS", "LOSSES", "MAX_HEADER_BYTES", "MAX_LAYERS",
    "MAX_MANIFEST_BYTES", "MAX_METADATA_ENTRIES", "MAX_METADATA_KEY_CHARS", "MAX_METADATA_VALUE_CHARS",
    "MAX_NAME_CHARS", "MAX_NORM_VALUE", "MAX_WEIGHT_BYTES_CEILING", "MAX_WIDTH", "METRICS", "MIN_STD",
    "OPTIMIZERS", "TASKS", "Manifest", "layer_params", "parameter_shapes", "strict_json",
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


def layer_params(index: int, spec: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
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
        if isinstance(v, bool) or not isinstance(v, (int, float, numbers.Real)):
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
        parsed = strict_json(text, "manifest")
        return cls.from_dict(parsed)


def strict_json(text: str, what: str) -> Any:
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
        shapes.update(layer_params(i, spec))
    return shapes
