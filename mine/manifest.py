"""The model manifest: a validated, canonical JSON description of a model and how to train it.

A :class:`Manifest` names the input schema (feature columns, target), the task, the layers (drawn
from the whitelist in :mod:`mine.layers`), the loss and metric, miners' training defaults and the
largest weights file accepted. Constructing one validates everything, including the *cost* of the
model: the per-example input shape is propagated through the layers with plain integers, and a
manifest whose weights, forward FLOPs or training memory exceed the limits below is refused with a
``ValidationError`` before any tensor is allocated — a malicious manifest cannot exhaust a miner's
RAM or CPU. ``to_json`` is canonical, so the same manifest always has the same CID.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Any, Final

import numbers

from mine.errors import ValidationError
from mine.layers import MAX_WIDTH, PARAMETRIC, Cost, Arg, check_arg, normalize_layer, parameter_shapes, walk

__all__ = [
    "DEFAULT_TRAINING",
    "HIGHER_IS_BETTER",
    "LOSSES",
    "MAX_FLOPS_PER_EXAMPLE",
    "MAX_TRAIN_MEMORY_BYTES",
    "METRICS",
    "Manifest",
    "TASKS",
    "TASK_METRICS",
    "strict_json",
]

#: Largest manifest JSON accepted (bytes).
MAX_MANIFEST_BYTES: Final = 1 << 20
#: Most layers a manifest may declare.
MAX_LAYERS: Final = 64
#: Longest name, feature name or target name (characters).
MAX_NAME_CHARS: Final = 128
#: Default and ceiling of ``max_weight_bytes``.
DEFAULT_MAX_WEIGHT_BYTES: Final = 16 << 20
MAX_WEIGHT_BYTES_CEILING: Final = 256 << 20
#: Bounds on normalization statistics (kept well inside float32 range).
MIN_STD: Final = 1e-12
MAX_NORM_VALUE: Final = 1e30
#: Forward floating-point operations per example (a multiply-add counts 2): about 1 GFLOP.
MAX_FLOPS_PER_EXAMPLE: Final = 1 << 30
#: Estimated training memory of one batch (see :attr:`Manifest.train_memory_bytes`): 2 GiB.
MAX_TRAIN_MEMORY_BYTES: Final = 2 << 30
#: Memory one evaluation chunk may use for its largest activation (sets :attr:`Manifest.eval_chunk_rows`).
EVAL_CHUNK_BYTES: Final = 256 << 20
MAX_EVAL_CHUNK_ROWS: Final = 8192

TASKS: Final = ("classification", "regression")
LOSSES: Final = {"classification": "cross_entropy", "regression": "mse"}
#: The default metric of each task (what the validation score of a version is).
METRICS: Final = {"classification": "accuracy", "regression": "mse"}
#: The metrics an owner may name for each task. Cross-entropy (the mean validation loss, lower is
#: better) moves with every example's confidence, so a small validation set, where one row is a
#: whole accuracy step, still tells a better model from a worse one.
TASK_METRICS: Final = {"classification": ("accuracy", "cross_entropy"), "regression": ("mse",)}
#: The metrics where a higher score is better.
HIGHER_IS_BETTER: Final = frozenset({"accuracy"})
OPTIMIZERS: Final = ("sgd", "adam")
DEFAULT_TRAINING: Final[dict[str, Any]] = {"epochs": 5, "lr": 0.01, "batch_size": 32, "optimizer": "adam"}

_TOP_KEYS: Final = frozenset(
    {"name", "task", "features", "target", "num_classes", "normalization", "layers", "loss", "metric",
     "training", "max_weight_bytes"}
)
_REQUIRED_TOP_KEYS: Final = ("name", "task", "features", "target", "layers", "loss", "metric")


def check_name(what: str, value: Any) -> str:
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
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
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
    ``metric`` (``"accuracy"`` or ``"cross_entropy"`` for classification, ``"mse"`` for
    regression: :data:`TASK_METRICS`); ``training`` (default ``epochs``, ``lr``, ``batch_size``,
    ``optimizer`` for miners); ``max_weight_bytes`` (largest weights or update file accepted).

    Every instance is validated in ``__post_init__`` and normalised (layer defaults filled in,
    numbers coerced), so ``to_json`` is canonical. Validation includes the model's cost
    (:attr:`cost`: the input shape walked through the layers) against :data:`MAX_FLOPS_PER_EXAMPLE`,
    :data:`MAX_TRAIN_MEMORY_BYTES` and ``max_weight_bytes``, before anything is built.
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
    _cost: Cost = dataclasses.field(init=False, repr=False, compare=False)

    # ----------------------------------------------------------------------------- validation
    def __post_init__(self) -> None:  # noqa: C901 - one linear list of checks
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 - frozen dataclass
        check_name("manifest 'name'", self.name)
        if self.task not in TASKS:
            raise ValidationError(f"manifest 'task' must be one of {', '.join(TASKS)}, got {self.task!r}")
        if not isinstance(self.features, (list, tuple)) or not self.features:
            raise ValidationError("manifest 'features' must be a non-empty list of column names")
        if len(self.features) > MAX_WIDTH:
            raise ValidationError(f"manifest has {len(self.features)} features; at most {MAX_WIDTH} are allowed")
        feats = [check_name(f"manifest 'features[{i}]'", f) for i, f in enumerate(self.features)]
        dupes = sorted(f for f, c in collections.Counter(feats).items() if c > 1)
        if dupes:
            raise ValidationError(f"manifest 'features' repeats column name(s) {dupes}; names must be unique")
        set_("features", feats)
        check_name("manifest 'target'", self.target)
        if self.target in feats:
            raise ValidationError(f"manifest 'target' {self.target!r} is also listed as a feature; remove it from 'features'")

        if self.loss != LOSSES[self.task]:
            raise ValidationError(f"manifest 'loss' for a {self.task} task must be {LOSSES[self.task]!r}, got {self.loss!r}")
        if self.metric not in TASK_METRICS[self.task]:
            raise ValidationError(
                f"manifest 'metric' for a {self.task} task must be one of "
                f"{', '.join(repr(m) for m in TASK_METRICS[self.task])}, got {self.metric!r}")

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
        layers = [normalize_layer(i, layer) for i, layer in enumerate(self.layers)]
        if not any(spec["type"] in PARAMETRIC for spec in layers):
            raise ValidationError("manifest 'layers' must contain at least one Linear, Conv1d, Conv2d or Embedding layer")
        if layers[0]["type"] == "Embedding" and self.normalization is not None:
            raise ValidationError("a manifest starting with Embedding takes integer token ids: 'normalization' must be null")
        cost = walk(layers, (len(feats),))
        if cost.output_shape != (out_width,):
            want = f"num_classes ({out_width})" if self.task == "classification" else "1 (regression)"
            last = next(s for s in reversed(layers) if s["type"] in PARAMETRIC or s["type"] in ("Flatten", "Unflatten"))
            if last["type"] == "Linear" and len(cost.output_shape) == 1:
                raise ValidationError(f"the last Linear layer has out_features={cost.output_shape[0]}; it must equal {want}")
            raise ValidationError(
                f"the model's output has shape {list(cost.output_shape)} per example; it must be [{out_width}] = {want} "
                "(end with Flatten and a Linear layer)")
        object.__setattr__(self, "_cost", cost)
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
        merged["epochs"] = int(check_arg("training", "epochs", Arg(int, None, 1, 10_000), merged["epochs"]))
        merged["lr"] = check_arg("training", "lr", Arg(float, None, 0.0, 10.0, lo_open=True), merged["lr"])
        merged["batch_size"] = int(check_arg("training", "batch_size", Arg(int, None, 1, 1 << 20), merged["batch_size"]))
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
        if cost.flops > MAX_FLOPS_PER_EXAMPLE:
            raise ValidationError(
                f"the model needs about {cost.flops:.3g} floating-point operations per example, more than the limit "
                f"of {MAX_FLOPS_PER_EXAMPLE:.3g}; use fewer channels, smaller inputs or more pooling")
        mem = self.train_memory_bytes
        if mem > MAX_TRAIN_MEMORY_BYTES:
            raise ValidationError(
                f"training this model with batch_size={merged['batch_size']} needs about {mem / 2**20:.0f} MiB, more than "
                f"the limit of {MAX_TRAIN_MEMORY_BYTES / 2**20:.0f} MiB; use a smaller batch_size or a smaller model")

    # ----------------------------------------------------------------------------- properties
    @property
    def higher_is_better(self) -> bool:
        """True for accuracy, False for an error metric (cross-entropy, MSE)."""
        return self.metric in HIGHER_IS_BETTER

    @property
    def output_width(self) -> int:
        """Width of the model output: ``num_classes`` or 1."""
        return self.num_classes if self.num_classes is not None else 1

    @property
    def parameter_count(self) -> int:
        """Number of scalar parameters of the model."""
        return self.cost.parameters

    @property
    def cost(self) -> Cost:
        """Per-example shapes and cost of the model (:func:`mine.layers.walk`), computed at validation."""
        return self._cost

    @property
    def flops_per_example(self) -> int:
        """Forward floating-point operations per example."""
        return self.cost.flops

    @property
    def train_memory_bytes(self) -> int:
        """Estimated memory of one training step at the manifest's batch size (float32).

        ``4 * (batch * (2 * activations + inputs + parameters) + 4 * parameters)``: activations kept
        for the backward pass and their gradients, per-example gradients (DP-SGD), and weights,
        gradients and two Adam moments.
        """
        c, batch = self.cost, int(self.training["batch_size"])
        return 4 * (batch * (2 * c.activations + len(self.features) + c.parameters) + 4 * c.parameters)

    @property
    def max_train_batch(self) -> int:
        """Largest batch whose training step stays within :data:`MAX_TRAIN_MEMORY_BYTES` (at least 1).

        A trainer whose batch is set by something else than ``training.batch_size`` (DP-SGD's
        sampling rate over the whole dataset, for instance) should split physical batches to this size.
        """
        c = self.cost
        per_row = 4 * (2 * c.activations + len(self.features) + c.parameters)
        return max(1, (MAX_TRAIN_MEMORY_BYTES - 16 * c.parameters) // per_row)

    @property
    def eval_chunk_rows(self) -> int:
        """Rows per forward pass in evaluation: its largest activation stays under 256 MiB (<= 8192)."""
        return max(1, min(MAX_EVAL_CHUNK_ROWS, EVAL_CHUNK_BYTES // (4 * self.cost.peak)))

    @property
    def token_inputs(self) -> bool:
        """True when the first layer is an Embedding: the features are integer token ids."""
        return self.layers[0]["type"] == "Embedding"

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


