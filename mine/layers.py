"""The layer whitelist: what a manifest's ``layers`` may contain, checked and costed before building.

A layer spec is a JSON object ``{"type": NAME, ARG: VALUE, ...}``. Only the modules in
:data:`LAYERS` exist, each with bounded keyword arguments; nothing else is ever constructed, and
nothing from the wire is executed. :func:`walk` propagates the per-example input shape through the
layers with plain integers — every shape is checked (kernels that do not fit, channel counts that do
not match, ...) and the forward FLOPs and activation sizes are added up — so a manifest that would
exhaust a miner's RAM or CPU is refused (see :mod:`mine.manifest`) before any tensor exists.

Shapes are per example (the batch dimension is implicit): a manifest's input is ``(features,)``;
``Unflatten`` turns it into ``(C, L)`` or ``(C, H, W)`` for convolutions, ``Flatten`` back into a
vector. ``Embedding`` may only be the first layer: the features are then integer token ids
(``(L,)`` → ``(L, D)``) and the manifest has no normalization.

Normalisation layers: ``GroupNorm`` and ``LayerNorm`` only. ``BatchNorm`` is refused on purpose:
its running mean/variance are buffers that change in ``train()`` without a gradient, so they would
have to travel inside every update (outside the clipping and the DP noise, and revealing statistics
of the miner's data), its output for one example depends on the other examples of the batch (no
per-example gradients, so Opacus refuses it for DP-SGD), and evaluation would depend on the batch
layout. ``GroupNorm`` normalises each example on its own and has only learned parameters.

``Softmax`` is not offered: the loss (cross entropy) takes logits, and a final softmax silently
slows training down; predictions use ``argmax`` of the logits.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, NoReturn

from mine.errors import ValidationError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from mine.manifest import Manifest

__all__ = [
    "LAYERS",
    "Cost",
    "build_model",
    "layer_module",
    "layer_params",
    "model_state",
    "normalize_layer",
    "parameter_shapes",
    "spec_of_module",
    "walk",
]

#: Widest layer: channels, features, embedding dimension.
MAX_WIDTH: Final = 8192
#: Largest kernel, stride, padding of a convolution or pooling layer.
MAX_KERNEL: Final = 64
MAX_DILATION: Final = 16
#: Largest spatial size named in Unflatten / AdaptiveAvgPool2d.
MAX_SPATIAL: Final = 4096
#: Largest embedding vocabulary.
MAX_EMBEDDINGS: Final = 1 << 20
#: Most activation elements one example may produce in any single layer.
MAX_LAYER_ELEMENTS: Final = 1 << 24


@dataclasses.dataclass(frozen=True)
class Arg:
    """One keyword argument: ``kind`` int, float, bool, str (``choices``) or ``"pair"``/``"sizes"``."""

    kind: Any
    default: Any = None  # None = required (unless ``optional``)
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    choices: tuple[str, ...] = ()
    optional: bool = False  # default None is a real value (e.g. pooling stride = kernel size)


def _pair(lo: int, hi: int, default: Any = None, optional: bool = False) -> Arg:
    return Arg("pair", default, lo, hi, optional=optional)


def _conv(dims: int) -> dict[str, Arg]:
    size = (lambda lo, hi, d=None: Arg(int, d, lo, hi)) if dims == 1 else (lambda lo, hi, d=None: _pair(lo, hi, d))
    return {
        "in_channels": Arg(int, None, 1, MAX_WIDTH),
        "out_channels": Arg(int, None, 1, MAX_WIDTH),
        "kernel_size": size(1, MAX_KERNEL),
        "stride": size(1, MAX_KERNEL, 1),
        "padding": size(0, MAX_KERNEL, 0),
        "dilation": size(1, MAX_DILATION, 1),
        "groups": Arg(int, 1, 1, MAX_WIDTH),
        "bias": Arg(bool, True),
    }


def _pool(dims: int) -> dict[str, Arg]:
    if dims == 1:
        return {"kernel_size": Arg(int, None, 1, MAX_KERNEL), "stride": Arg(int, None, 1, MAX_KERNEL, optional=True),
                "padding": Arg(int, 0, 0, MAX_KERNEL)}
    return {"kernel_size": _pair(1, MAX_KERNEL), "stride": _pair(1, MAX_KERNEL, optional=True),
            "padding": _pair(0, MAX_KERNEL, 0)}


#: The only modules a manifest may use, each with its allowed keyword arguments and bounds.
LAYERS: Final[dict[str, dict[str, Arg]]] = {
    "Linear": {
        "in_features": Arg(int, None, 1, MAX_WIDTH),
        "out_features": Arg(int, None, 1, MAX_WIDTH),
        "bias": Arg(bool, True),
    },
    "ReLU": {},
    "Tanh": {},
    "Sigmoid": {},
    "GELU": {"approximate": Arg(str, "none", choices=("none", "tanh"))},
    "Dropout": {"p": Arg(float, 0.5, 0.0, 1.0, hi_open=True)},
    "LayerNorm": {
        "normalized_shape": Arg(int, None, 1, MAX_WIDTH),
        "eps": Arg(float, 1e-5, 0.0, 1.0, lo_open=True),
        "elementwise_affine": Arg(bool, True),
    },
    "GroupNorm": {
        "num_groups": Arg(int, None, 1, MAX_WIDTH),
        "num_channels": Arg(int, None, 1, MAX_WIDTH),
        "eps": Arg(float, 1e-5, 0.0, 1.0, lo_open=True),
        "affine": Arg(bool, True),
    },
    "Flatten": {},
    "Unflatten": {"dim": Arg(int, 1, 1, 1), "unflattened_size": Arg("sizes", None, 1, MAX_SPATIAL)},
    "Conv1d": _conv(1),
    "Conv2d": _conv(2),
    "MaxPool1d": _pool(1),
    "MaxPool2d": _pool(2),
    "AvgPool1d": _pool(1),
    "AvgPool2d": _pool(2),
    "AdaptiveAvgPool2d": {"output_size": _pair(1, MAX_SPATIAL)},
    "Embedding": {
        "num_embeddings": Arg(int, None, 1, MAX_EMBEDDINGS),
        "embedding_dim": Arg(int, None, 1, MAX_WIDTH),
    },
}

#: Layers that own parameters (a manifest needs at least one).
PARAMETRIC: Final = frozenset({"Linear", "Conv1d", "Conv2d", "Embedding"})


# --------------------------------------------------------------------------------------------
# Argument checking
# --------------------------------------------------------------------------------------------


def _check_int(where: str, key: str, value: Any, lo: float | None, hi: float | None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{where}: {key!r} must be an integer, got {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ValidationError(f"{where}: {key!r}={value!r} is out of range; it must be between {lo:g} and {hi:g}")
    return value


def check_arg(where: str, key: str, spec: Arg, value: Any) -> Any:
    if spec.optional and value is None:
        return None
    if spec.kind is bool:
        if not isinstance(value, bool):
            raise ValidationError(f"{where}: {key!r} must be true or false, got {value!r}")
        return value
    if spec.kind is str:
        if value not in spec.choices:
            raise ValidationError(f"{where}: {key!r} must be one of {', '.join(map(repr, spec.choices))}, got {value!r}")
        return value
    if spec.kind == "pair":
        items = [value, value] if isinstance(value, int) and not isinstance(value, bool) else value
        if not isinstance(items, (list, tuple)) or len(items) != 2:
            raise ValidationError(f"{where}: {key!r} must be an integer or a list of 2 integers, got {value!r}")
        return [_check_int(where, key, v, spec.lo, spec.hi) for v in items]
    if spec.kind == "sizes":
        if not isinstance(value, (list, tuple)) or not 1 <= len(value) <= 3:
            raise ValidationError(f"{where}: {key!r} must be a list of 1 to 3 integers (e.g. [1, 8, 8]), got {value!r}")
        return [_check_int(where, key, v, spec.lo, spec.hi) for v in value]
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


def normalize_layer(index: int, layer: Any) -> dict[str, Any]:
    """Check one layer spec against the whitelist; return it with defaults filled in (canonical form).

    Canonical form: every argument present; 2-D sizes as ``[h, w]`` lists; a pooling ``stride`` left
    out (or null) becomes the kernel size, as in torch.
    """
    where = f"layers[{index}]"
    if not isinstance(layer, Mapping):
        raise ValidationError(f"{where} must be an object like {{\"type\": \"Linear\", ...}}, got {layer!r}")
    kind = layer.get("type")
    if kind not in LAYERS:
        hint = (" (BatchNorm is not offered: use GroupNorm, see mine.layers)"
                if isinstance(kind, str) and kind.startswith("BatchNorm") else "")
        raise ValidationError(
            f"{where}: unknown layer type {kind!r}{hint}; allowed types are {', '.join(sorted(LAYERS))}"
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
            out[key] = check_arg(f"{where} ({kind})", key, spec, layer[key])
        elif spec.default is None and not spec.optional:
            raise ValidationError(f"{where} ({kind}): missing required argument {key!r}")
        else:
            out[key] = check_arg(f"{where} ({kind})", key, spec, spec.default)
    if "Pool" in kind and "Adaptive" not in kind:
        if out["stride"] is None:
            out["stride"] = out["kernel_size"]
        k, p = out["kernel_size"], out["padding"]
        if any(2 * pi > ki for pi, ki in zip(_as_list(p), _as_list(k))):
            raise ValidationError(f"{where} ({kind}): padding={p} must be at most half of kernel_size={k}")
    if kind in ("Conv1d", "Conv2d"):
        g = out["groups"]
        if out["in_channels"] % g or out["out_channels"] % g:
            raise ValidationError(
                f"{where} ({kind}): groups={g} must divide in_channels={out['in_channels']} and "
                f"out_channels={out['out_channels']}")
    if kind == "GroupNorm" and out["num_channels"] % out["num_groups"]:
        raise ValidationError(
            f"{where} (GroupNorm): num_groups={out['num_groups']} must divide num_channels={out['num_channels']}")
    return out


def _as_list(v: Any) -> list[int]:
    return list(v) if isinstance(v, (list, tuple)) else [v]


# --------------------------------------------------------------------------------------------
# Shapes and cost
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Cost:
    """What a model costs per example, from :func:`walk` (no tensor is built to know it).

    ``output_shape`` the per-example output; ``flops`` forward floating-point operations (a
    multiply-add counts 2); ``activations`` elements produced by all layers together (kept for the
    backward pass); ``peak`` the largest single layer input or output (elements); ``parameters``.
    """

    output_shape: tuple[int, ...]
    flops: int
    activations: int
    peak: int
    parameters: int


def _out_len(n: int, k: int, s: int, p: int, d: int = 1) -> int:
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def _spatial(where: str, kind: str, shape: tuple[int, ...], dims: int, spec: Mapping[str, Any]
             ) -> tuple[int, ...]:
    """Output spatial size of a convolution or pooling layer over ``shape[1:]``."""
    ks, ss, ps = _as_list(spec["kernel_size"]), _as_list(spec["stride"]), _as_list(spec["padding"])
    ds = _as_list(spec.get("dilation", 1))
    if len(ds) == 1:
        ds = ds * dims
    out = []
    for n, k, s, p, d in zip(shape[1:], ks, ss, ps, ds):
        o = _out_len(n, k, s, p, d)
        if o < 1:
            raise ValidationError(
                f"{where} ({kind}): kernel_size={spec['kernel_size']} does not fit an input of spatial size "
                f"{list(shape[1:])} (with padding={spec['padding']}); the output would be empty")
        out.append(o)
    return tuple(out)


def _need_rank(where: str, kind: str, shape: tuple[int, ...], rank: int, what: str) -> None:
    if len(shape) != rank:
        raise ValidationError(
            f"{where} ({kind}) needs {what} per example, but its input has shape {list(shape)}; "
            "put an Unflatten before it (e.g. {\"type\": \"Unflatten\", \"unflattened_size\": [1, 8, 8]})")


def _step(index: int, spec: Mapping[str, Any], shape: tuple[int, ...], changed_by: str | None
          ) -> tuple[tuple[int, ...], int]:
    """One layer: its per-example output shape and forward FLOPs, or a ValidationError naming the mismatch."""
    kind = spec["type"]
    where = f"layers[{index}]"
    n = math.prod(shape)
    if kind == "Linear":
        if shape[-1] != spec["in_features"]:
            what = "the number of features" if changed_by is None else f"the previous {changed_by} layer's output"
            raise ValidationError(
                f"{where} (Linear): in_features={spec['in_features']} does not match {what} ({shape[-1]})")
        out = shape[:-1] + (spec["out_features"],)
        return out, 2 * spec["in_features"] * math.prod(out)
    if kind in ("ReLU", "Tanh", "Sigmoid", "Dropout"):
        return shape, n
    if kind == "GELU":
        return shape, 8 * n
    if kind == "LayerNorm":
        if shape[-1] != spec["normalized_shape"]:
            raise ValidationError(
                f"{where} (LayerNorm): normalized_shape={spec['normalized_shape']} does not match the "
                f"width at that point ({shape[-1]})")
        return shape, 8 * n
    if kind == "GroupNorm":
        if len(shape) < 2 or shape[0] != spec["num_channels"]:
            raise ValidationError(
                f"{where} (GroupNorm): num_channels={spec['num_channels']} does not match the input's channels "
                f"(input shape {list(shape)}; GroupNorm needs (channels, ...) per example)")
        return shape, 8 * n
    if kind == "Flatten":
        return (n,), 0
    if kind == "Unflatten":
        sizes = tuple(spec["unflattened_size"])
        if math.prod(sizes) != shape[0]:
            raise ValidationError(
                f"{where} (Unflatten): unflattened_size={list(sizes)} has {math.prod(sizes)} elements but the input "
                f"has {shape[0]} at that point (shape {list(shape)})")
        return sizes + shape[1:], 0
    if kind in ("Conv1d", "Conv2d"):
        dims = 1 if kind == "Conv1d" else 2
        _need_rank(where, kind, shape, dims + 1, "(channels, length)" if dims == 1 else "(channels, height, width)")
        if shape[0] != spec["in_channels"]:
            raise ValidationError(
                f"{where} ({kind}): in_channels={spec['in_channels']} does not match the input's "
                f"{shape[0]} channel(s) (input shape {list(shape)})")
        sp = _spatial(where, kind, shape, dims, spec)
        out = (spec["out_channels"],) + sp
        per_output = spec["in_channels"] // spec["groups"] * math.prod(_as_list(spec["kernel_size"]))
        return out, 2 * per_output * math.prod(out)
    if kind in ("MaxPool1d", "AvgPool1d", "MaxPool2d", "AvgPool2d"):
        dims = 1 if kind.endswith("1d") else 2
        _need_rank(where, kind, shape, dims + 1, "(channels, length)" if dims == 1 else "(channels, height, width)")
        out = (shape[0],) + _spatial(where, kind, shape, dims, spec)
        return out, math.prod(_as_list(spec["kernel_size"])) * math.prod(out)
    if kind == "AdaptiveAvgPool2d":
        _need_rank(where, kind, shape, 3, "(channels, height, width)")
        return (shape[0],) + tuple(spec["output_size"]), n
    if kind == "Embedding":
        if index != 0:
            raise ValidationError(f"{where} (Embedding) must be the first layer (its input is the integer features)")
        out = shape + (spec["embedding_dim"],)
        return out, math.prod(out)
    raise ValidationError(f"{where}: unknown layer type {kind!r}")  # unreachable after normalize_layer


def walk(layers: Sequence[Mapping[str, Any]], input_shape: tuple[int, ...]) -> Cost:
    """Propagate ``input_shape`` (per example) through normalised ``layers``; the :class:`Cost`.

    Raises ``ValidationError`` at the first layer whose input does not fit it, or whose output would
    exceed :data:`MAX_LAYER_ELEMENTS` per example. Pure integer arithmetic: nothing is allocated.
    """
    shape = tuple(input_shape)
    flops = activations = 0
    peak = math.prod(shape)
    changed_by: str | None = None
    for i, spec in enumerate(layers):
        new, f = _step(i, spec, shape, changed_by)
        size = math.prod(new)
        if size > MAX_LAYER_ELEMENTS:
            raise ValidationError(
                f"layers[{i}] ({spec['type']}) outputs {list(new)} = {size} values per example; at most "
                f"{MAX_LAYER_ELEMENTS} are allowed per layer")
        if new != shape:
            changed_by = spec["type"]
        shape = new
        flops += f
        activations += size
        peak = max(peak, size)
    params = sum(math.prod(s) for i, spec in enumerate(layers) for s in layer_params(i, spec).values())
    return Cost(shape, flops, activations, peak, params)


# --------------------------------------------------------------------------------------------
# Parameters and modules
# --------------------------------------------------------------------------------------------


def layer_params(index: int, spec: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes of layer ``index`` (as in ``Sequential.state_dict()``)."""
    kind = spec["type"]
    shapes: dict[str, tuple[int, ...]] = {}
    if kind == "Linear":
        shapes[f"{index}.weight"] = (spec["out_features"], spec["in_features"])
        if spec["bias"]:
            shapes[f"{index}.bias"] = (spec["out_features"],)
    elif kind in ("Conv1d", "Conv2d"):
        k = tuple(_as_list(spec["kernel_size"]))
        shapes[f"{index}.weight"] = (spec["out_channels"], spec["in_channels"] // spec["groups"]) + k
        if spec["bias"]:
            shapes[f"{index}.bias"] = (spec["out_channels"],)
    elif kind == "LayerNorm" and spec["elementwise_affine"]:
        n = spec["normalized_shape"]
        shapes = {f"{index}.weight": (n,), f"{index}.bias": (n,)}
    elif kind == "GroupNorm" and spec["affine"]:
        n = spec["num_channels"]
        shapes = {f"{index}.weight": (n,), f"{index}.bias": (n,)}
    elif kind == "Embedding":
        shapes[f"{index}.weight"] = (spec["num_embeddings"], spec["embedding_dim"])
    return shapes


def parameter_shapes(manifest: Manifest) -> dict[str, tuple[int, ...]]:
    """The parameter names and shapes of ``build_model(manifest)``, computed without building it."""
    shapes: dict[str, tuple[int, ...]] = {}
    for i, spec in enumerate(manifest.layers):
        shapes.update(layer_params(i, spec))
    return shapes


def _t(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def layer_module(spec: Mapping[str, Any]) -> torch.nn.Module:
    """The torch module of one *validated* layer spec."""
    import torch

    kind = spec["type"]
    nn = torch.nn
    if kind == "Linear":
        return nn.Linear(spec["in_features"], spec["out_features"], bias=spec["bias"])
    if kind in ("ReLU", "Tanh", "Sigmoid", "Flatten"):
        return getattr(nn, kind)()
    if kind == "GELU":
        return nn.GELU(approximate=spec["approximate"])
    if kind == "Dropout":
        return nn.Dropout(p=spec["p"])
    if kind == "LayerNorm":
        return nn.LayerNorm(spec["normalized_shape"], eps=spec["eps"], elementwise_affine=spec["elementwise_affine"])
    if kind == "GroupNorm":
        return nn.GroupNorm(spec["num_groups"], spec["num_channels"], eps=spec["eps"], affine=spec["affine"])
    if kind == "Unflatten":
        return nn.Unflatten(1, tuple(spec["unflattened_size"]))
    if kind in ("Conv1d", "Conv2d"):
        return getattr(nn, kind)(spec["in_channels"], spec["out_channels"], _t(spec["kernel_size"]),
                                 stride=_t(spec["stride"]), padding=_t(spec["padding"]),
                                 dilation=_t(spec["dilation"]), groups=spec["groups"], bias=spec["bias"])
    if kind in ("MaxPool1d", "MaxPool2d", "AvgPool1d", "AvgPool2d"):
        return getattr(nn, kind)(_t(spec["kernel_size"]), stride=_t(spec["stride"]), padding=_t(spec["padding"]))
    if kind == "AdaptiveAvgPool2d":
        return nn.AdaptiveAvgPool2d(_t(spec["output_size"]))
    if kind == "Embedding":
        return nn.Embedding(spec["num_embeddings"], spec["embedding_dim"])
    raise ValidationError(f"unknown layer type {kind!r}")  # unreachable after validation


def build_model(manifest: Manifest, seed: int | None = None) -> torch.nn.Sequential:
    """Build the manifest's ``Sequential`` in float32 on CPU.

    With a ``seed`` the initial weights are a pure function of (manifest, seed, torch version) and
    the global torch RNG is left untouched; with ``None`` the global RNG is used. The manifest was
    validated (shapes, memory and FLOP bounds) when it was constructed.
    """
    import torch

    if seed is None:
        return torch.nn.Sequential(*(layer_module(s) for s in manifest.layers)).float()
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValidationError(f"seed must be an integer or None, got {seed!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torch.nn.Sequential(*(layer_module(s) for s in manifest.layers)).float()


def model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached float32 copy of a model's parameters, the form used everywhere in this package."""
    import torch

    return {k: v.detach().to(torch.float32).clone() for k, v in model.state_dict().items()}


# --------------------------------------------------------------------------------------------
# From torch modules (the owner's own model, on the owner's machine: see mine.templates)
# --------------------------------------------------------------------------------------------


def _plain(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def spec_of_module(index: int, module: torch.nn.Module) -> dict[str, Any]:
    """The layer spec of a torch module instance, or ``ValidationError`` naming a module outside the whitelist.

    Only exact whitelisted types are accepted (a subclass could override ``forward``), with the
    arguments a manifest can express; anything else (BatchNorm, a custom module, padding modes,
    ``ceil_mode``, an Embedding's ``max_norm`` ...) is refused by name.
    """
    import torch

    nn = torch.nn
    kind = type(module).__name__
    where = f"module {index} ({kind})"
    if getattr(nn, kind, None) is not type(module) or kind not in LAYERS:
        hint = "; use GroupNorm instead" if kind.startswith("BatchNorm") else ""
        raise ValidationError(f"{where} is not an allowed layer{hint}; allowed: {', '.join(sorted(LAYERS))}")

    def refuse(what: str) -> NoReturn:
        raise ValidationError(f"{where}: {what} cannot be expressed in a manifest")

    m: Any = module
    if kind == "Linear":
        return {"type": kind, "in_features": m.in_features, "out_features": m.out_features, "bias": m.bias is not None}
    if kind in ("ReLU", "Tanh", "Sigmoid"):
        return {"type": kind}
    if kind == "GELU":
        return {"type": kind, "approximate": m.approximate}
    if kind == "Dropout":
        return {"type": kind, "p": float(m.p)}
    if kind == "LayerNorm":
        if len(m.normalized_shape) != 1:
            refuse(f"normalized_shape={tuple(m.normalized_shape)} over several dimensions")
        if m.elementwise_affine and m.bias is None:
            refuse("bias=False")
        return {"type": kind, "normalized_shape": m.normalized_shape[0], "eps": float(m.eps),
                "elementwise_affine": bool(m.elementwise_affine)}
    if kind == "GroupNorm":
        return {"type": kind, "num_groups": m.num_groups, "num_channels": m.num_channels, "eps": float(m.eps),
                "affine": bool(m.affine)}
    if kind == "Flatten":
        if (m.start_dim, m.end_dim) != (1, -1):
            refuse(f"start_dim={m.start_dim}, end_dim={m.end_dim} (only 1, -1)")
        return {"type": kind}
    if kind == "Unflatten":
        if m.dim != 1:
            refuse(f"dim={m.dim} (only 1)")
        return {"type": kind, "dim": 1, "unflattened_size": list(m.unflattened_size)}
    if kind in ("Conv1d", "Conv2d"):
        if m.padding_mode != "zeros" or isinstance(m.padding, str):
            refuse(f"padding={m.padding!r}, padding_mode={m.padding_mode!r} (only integer zero padding)")
        one = (lambda v: v[0]) if kind == "Conv1d" else _plain
        return {"type": kind, "in_channels": m.in_channels, "out_channels": m.out_channels,
                "kernel_size": one(m.kernel_size), "stride": one(m.stride), "padding": one(m.padding),
                "dilation": one(m.dilation), "groups": m.groups, "bias": m.bias is not None}
    if kind in ("MaxPool1d", "MaxPool2d", "AvgPool1d", "AvgPool2d"):
        if getattr(m, "ceil_mode", False) or getattr(m, "return_indices", False):
            refuse("ceil_mode / return_indices")
        if kind.startswith("Max") and _as_list(m.dilation) not in ([1], [1, 1]):
            refuse(f"dilation={m.dilation}")
        if kind.startswith("Avg") and (not m.count_include_pad or m.__dict__.get("divisor_override")):
            refuse("count_include_pad=False / divisor_override")
        fix = (lambda v: _as_list(v)[0]) if kind.endswith("1d") else (lambda v: _as_list(v) * (2 // len(_as_list(v))))
        return {"type": kind, "kernel_size": fix(m.kernel_size), "stride": fix(m.stride), "padding": fix(m.padding)}
    if kind == "AdaptiveAvgPool2d":
        size = _as_list(m.output_size)
        if any(s is None for s in size):
            refuse("output_size with None")
        return {"type": kind, "output_size": size * (2 // len(size))}
    if kind == "Embedding":
        if m.padding_idx is not None or m.max_norm is not None or m.scale_grad_by_freq or m.sparse:
            refuse("padding_idx / max_norm / scale_grad_by_freq / sparse")
        return {"type": kind, "num_embeddings": m.num_embeddings, "embedding_dim": m.embedding_dim}
    refuse("this configuration")  # pragma: no cover - every whitelisted kind returned above
