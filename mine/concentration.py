"""Backdoor evidence in an update's first layer (code 9), and the DP noise an update carries.

A backdoor (a trigger stamped on some rows, relabelled) is invisible on the owner's clean validation
set to the round policy's other rules, but to learn it the update must move the first-layer weights
of the trigger's inputs far more than clean data ever does. Per input unit of the first layer
(:func:`input_groups`: a Linear column, a convolution's input channel, an embedding row; for a
one-channel CNN its Linear head per output and feature-map position) the update's
energy is its signal plus DP noise of a variance estimated from the update itself
(:func:`noise_variance`); clean data of any one validation class (or owner's group) gives that input
at most a share of its gradient energy (:func:`clean_input_shares`). :func:`concentration_pvalues`
tests the update against those shares (noncentral chi-square), :func:`concentrated` applies the
Bonferroni limit, and :func:`fisher_terms` / :func:`fisher_combined` pool a miner's updates over a
bounty. The same noise estimate tells a small shard's noisy update from a boosted one
(:func:`declared_noise_std`, :func:`noise_explains_norm`). :mod:`mine.policy` applies all of it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from mine.errors import ValidationError
from mine.model import Manifest, build_model, update_norm

__all__ = [
    "MIN_PVALUE",
    "InputUnits",
    "NOISE_MARGIN",
    "NOISE_SIGNAL_SLACK",
    "clean_input_bounds",
    "clean_input_shares",
    "concentrated",
    "concentration_pvalues",
    "declared_noise_std",
    "fisher_combined",
    "fisher_terms",
    "group_matrix",
    "input_groups",
    "mechanism_norm_bound",
    "noise_explains_norm",
    "noise_variance",
    "signal_shares",
]

#: Smallest p-value a Fisher term is taken at (an underflow to 0 counts as this).
MIN_PVALUE = 1e-300

#: Smallest group (parameters per input unit) and fewest groups :func:`input_groups` tests.
MIN_GROUP_SIZE = 8
MIN_GROUPS = 4
#: Per-example gradient entries held at once in :func:`clean_input_shares` (rows per batch times
#: parameters; 2**25 float32 = 128 MiB), and the most rows per batch.
SHARE_BATCH_ENTRIES = 1 << 25
SHARE_BATCH_ROWS = 256
#: Bootstrap resamples per subgroup for :func:`clean_input_shares`' ``quantile``: fewer for a first
#: layer so large that they would not fit in :data:`SHARE_BATCH_ENTRIES` (float64 sums), and none
#: (the class means only) below :data:`SHARE_MIN_BOOTSTRAPS`.
SHARE_BOOTSTRAPS = 64
SHARE_MIN_BOOTSTRAPS = 16
#: Largest side of the matrix whose singular values :func:`noise_variance` computes.
NOISE_MAX_SIDE = 1024


class InputUnits(NamedTuple):
    """Where :func:`input_groups` found the input units: weight ``name`` (viewed as ``shape`` if
    given), the axis (or axes) of its units (:func:`group_matrix`) and their names."""

    name: str
    axis: int | tuple[int, ...]
    names: list[str]
    shape: tuple[int, ...] | None = None


def _flatten_input_shape(model: torch.nn.Module, n_features: int, flatten: torch.nn.Module) -> tuple[int, ...]:
    seen: list[tuple[int, ...]] = []
    handle = flatten.register_forward_pre_hook(lambda _m, args: seen.append(tuple(args[0].shape[1:])))
    try:
        with torch.no_grad():
            model(torch.zeros(2, n_features))
    finally:
        handle.remove()
    return seen[0]


def input_groups(manifest: Manifest, *, head: bool = True) -> InputUnits | None:
    """The first layer's input units: its weight, the axis of its units and their names, or ``None``.

    A Linear layer's inputs are its columns (the manifest's features when it is the first layer),
    a convolution's its input channels, an embedding's its rows (tokens). A convolution on fewer
    than :data:`MIN_GROUPS` channels (a one-channel image) shares each kernel over every pixel, so a
    trigger cannot show in it; its input units are then the first Linear layer after the Flatten
    taken per output and *position* of the feature map (every channel's weight from one place to one
    output; ``shape`` views the weight as outputs x channels x positions): a trigger sits at a place
    and points to a label, so the Linear layer must move the weights from that place to that output
    to learn it (``head=False``: ``None`` for such a model). ``None`` when there are fewer than
    :data:`MIN_GROUPS` units or fewer than :data:`MIN_GROUP_SIZE` parameters per unit (a linear
    regression): too little to tell a concentration from DP noise.
    """
    model = build_model(manifest, seed=0)
    children = list(model.named_children())
    for at, (prefix, module) in enumerate(children):
        weight = getattr(module, "weight", None)
        if not isinstance(weight, torch.nn.Parameter):
            continue
        if isinstance(module, torch.nn.Embedding):
            axis, names = 0, [f"token {j}" for j in range(weight.shape[0])]
        elif isinstance(module, (torch.nn.Conv1d, torch.nn.Conv2d)) and weight.shape[1] < MIN_GROUPS:
            if not head:
                return None
            return _positions_after_flatten(model, children[at + 1:], len(manifest.features))
        elif isinstance(module, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d)):
            axis = 1
            n_in = weight.shape[1]
            names = (list(manifest.features) if isinstance(module, torch.nn.Linear) and n_in == len(manifest.features)
                     else [f"input {j}" for j in range(n_in)])
        else:
            return None
        return _checked(InputUnits(f"{prefix}.weight", axis, names), weight)
    return None


def _positions_after_flatten(model: torch.nn.Module, rest: Sequence[tuple[str, torch.nn.Module]],
                             n_features: int) -> InputUnits | None:
    flatten = None
    for prefix, module in rest:
        if isinstance(module, torch.nn.Flatten):
            flatten = module
        elif isinstance(module, torch.nn.Linear) and flatten is not None:
            channels, *spatial = _flatten_input_shape(model, n_features, flatten)
            if not spatial:
                return None
            places = [divmod(j, spatial[-1]) if len(spatial) == 2 else (j,) for j in range(math.prod(spatial))]
            where = [f"position {tuple(p)}" if len(p) > 1 else f"position {p[0]}" for p in places]
            outputs = int(module.weight.shape[0])
            names = [f"output {o} at {w}" for o in range(outputs) for w in where]
            shape = (outputs, int(channels), len(places))
            return _checked(InputUnits(f"{prefix}.weight", (0, 2), names, shape), module.weight)
        elif getattr(module, "weight", None) is not None and not isinstance(module, (torch.nn.GroupNorm,
                                                                                     torch.nn.LayerNorm)):
            return None  # another layer with its own weights before the Linear one: not a plain head
    return None


def _checked(units: InputUnits, weight: torch.Tensor) -> InputUnits | None:
    shape = units.shape or tuple(weight.shape)
    groups = math.prod(shape[a] for a in ((units.axis,) if isinstance(units.axis, int) else units.axis))
    if groups < MIN_GROUPS or weight.numel() // groups < MIN_GROUP_SIZE:
        return None
    return units


def group_matrix(tensor: torch.Tensor, axis: int | Sequence[int], shape: Sequence[int] | None = None) -> torch.Tensor:
    """``tensor`` (viewed as ``shape`` if given) as a float64 matrix with one row per input unit and
    its parameters as columns; a unit is one index along ``axis`` (or one combination of indices
    along several axes, in their order)."""
    t = tensor.detach().to(torch.float64)
    if shape is not None:
        t = t.reshape(tuple(shape))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    t = t.movedim(axes, tuple(range(len(axes))))
    return t.reshape(math.prod(t.shape[:len(axes)]), -1)


@functools.lru_cache(maxsize=32)
def _reference_low_energy(shape: tuple[int, int]) -> float:
    gen = torch.Generator().manual_seed(0)
    k = max(min(shape) // 2, 1)
    draws = [torch.linalg.svdvals(torch.randn(*shape, generator=gen, dtype=torch.float64)).square()[-k:].mean()
             for _ in range(8)]
    return float(torch.stack(draws).mean())


def noise_variance(matrix: torch.Tensor) -> float:
    """Per-entry variance of the i.i.d. noise in ``matrix`` (signal plus Gaussian noise), estimated robustly.

    The signal of a trained update is concentrated in a few directions; DP noise spreads evenly over
    all singular values. The mean squared lower half of the singular values, divided by that of a
    standard Gaussian matrix of the same shape (fixed seed, deterministic), estimates the noise
    variance; a little signal left there only makes the estimate larger (fewer flags).
    """
    if matrix.ndim != 2 or min(matrix.shape) < 2:
        raise ValidationError(f"noise_variance needs a matrix of at least 2 x 2, got shape {tuple(matrix.shape)}")
    # a wide layer: an evenly spaced sub-matrix has the same noise and a cheap SVD
    steps = [max(1, math.ceil(n / NOISE_MAX_SIDE)) for n in matrix.shape]
    m = matrix.detach().to(torch.float64)[::steps[0], ::steps[1]]
    k = min(m.shape) // 2
    low = float(torch.linalg.svdvals(m).square()[-k:].mean())
    return low / _reference_low_energy((int(m.shape[0]), int(m.shape[1])))


#: How far an update's measured noise may exceed what its DP record and example bucket declare
#: (:func:`declared_noise_std`; a row count in ``[b, 2b)`` alone gives 0.5 to 1) and still be that noise.
NOISE_MARGIN = 1.25
#: The part of a noisy update's norm its signal estimate cannot resolve (see :func:`noise_explains_norm`).
NOISE_SIGNAL_SLACK = 0.25


def _declared_sgd(manifest: Manifest, dp_metadata: str | None, bucket: str | None) -> tuple[Any, int, float] | None:
    """``(DP record, example bucket, the bounty's lr)`` of a DP update whose bounty trains with plain
    SGD and which states a bucket; ``None`` otherwise (or if either is unreadable)."""
    from mine.dp import default_settings, parse_dp_metadata

    try:
        record = parse_dp_metadata(dp_metadata)
        optimizer, lr = default_settings(manifest).optimizer_and_lr(manifest.training)
        b = int(bucket) if bucket is not None else 0
    except (ValidationError, ValueError, KeyError):
        return None
    if record is None or b < 1 or optimizer != "sgd":
        return None
    return record, b, lr


def _noise_std(record: Any, b: int, lr: float) -> float:
    return lr * record.noise_multiplier * record.max_grad_norm * math.sqrt(record.steps) / (record.sample_rate * b)


def declared_noise_std(manifest: Manifest, dp_metadata: str | None, bucket: str | None) -> float | None:
    """The largest per-parameter std of DP noise an update can carry by its own declaration.

    Plain DP-SGD (:func:`mine.dp.train_dp` with the bounty's ``sgd`` settings) adds, per step,
    Gaussian noise of std ``sigma * C`` to the clipped sum and divides by ``q * n``; ``steps`` steps of
    learning rate ``lr`` leave ``lr * sigma * C * sqrt(steps) / (q * n)`` per parameter, at most that with
    ``n`` = the stated ``examples_bucket`` ``b <= n``. ``None`` if the update is not DP, states no
    bucket, or the bounty's DP optimizer is not plain SGD (Adam rescales the noise).
    """
    declared = _declared_sgd(manifest, dp_metadata, bucket)
    if declared is None:
        return None
    return _noise_std(*declared)


def mechanism_norm_bound(manifest: Manifest, dp_metadata: str | None, bucket: str | None, params: int
                         ) -> float | None:
    """The largest L2 norm an honest DP-SGD update of ``params`` parameters can have by its own declaration.

    Each of ``steps`` steps moves the weights by ``lr`` times the mean of per-example gradients
    clipped to ``C`` — norm at most ``C`` (full batches; with Poisson sampling at most ``C`` times the
    batch over its expected size ``q * b``, allowed 4 standard deviations) — plus the noise, whose norm
    is :func:`declared_noise_std` times ``sqrt(params)`` (given :data:`NOISE_MARGIN`). So the norm is
    at most ``lr * steps * C * slack + NOISE_MARGIN * declared_std * sqrt(params)``: a bound, not an
    estimate — an update beyond it was scaled after training (or trained with more than the bounty's
    ``lr``). ``None`` where :func:`declared_noise_std` is.
    """
    declared = _declared_sgd(manifest, dp_metadata, bucket)
    if declared is None:
        return None
    record, b, lr = declared
    std = _noise_std(record, b, lr)
    expected = record.sample_rate * b
    slack = 1.0 if record.sample_rate >= 1.0 else 1.0 + 4.0 / math.sqrt(expected) + 4.0 / expected
    return lr * record.steps * record.max_grad_norm * slack + NOISE_MARGIN * std * math.sqrt(max(int(params), 0))


def noise_explains_norm(delta: Mapping[str, torch.Tensor], declared_std: float | None, limit: float) -> bool:
    """Is an update's excess norm its own declared DP noise (a small shard's), not a boost?

    True iff the noise measured in its largest weight matrix (:func:`noise_variance`) is at most
    :data:`NOISE_MARGIN` times ``declared_std`` and what is left of the norm without that noise is
    within ``limit`` (the round's robust norm limit) or within the estimate's error
    (:data:`NOISE_SIGNAL_SLACK` of the noise's norm). A boosted update scales its noise with its
    signal (x20: 10 to 17 times the declared noise, measured); an honest one of 10 rows has 0.5 to
    0.9 times it, however large its norm.
    """
    if declared_std is None or not (math.isfinite(declared_std) and declared_std > 0):
        return False
    mats = [t for t in delta.values() if t.ndim == 2 and min(t.shape) >= 4]
    if not mats:
        return False
    v = noise_variance(max(mats, key=lambda t: t.numel()))
    if not (math.isfinite(v) and math.sqrt(v) <= NOISE_MARGIN * declared_std):
        return False
    noise = sum(t.numel() for t in delta.values()) * v
    signal = math.sqrt(max(update_norm(delta) ** 2 - noise, 0.0))
    # norm^2 - noise is a small difference of large numbers: the estimate of v is good to a few
    # per cent, so a signal up to a quarter of the noise's norm is within that error
    return signal <= max(limit, NOISE_SIGNAL_SLACK * math.sqrt(noise))


def concentration_pvalues(matrix: torch.Tensor, allowed_shares: Sequence[float]) -> list[float]:
    """For each input unit (row of ``matrix``), how likely its energy is if its signal share is at most allowed.

    ``matrix`` is one update's first-layer weights grouped by input unit (:func:`group_matrix`),
    each entry its signal plus DP noise of one unknown variance ``v`` (:func:`noise_variance`).
    Row ``g``'s energy ``E_g`` over ``v`` is then noncentral chi-square with ``m`` (row length)
    degrees of freedom and noncentrality ``signal_g / v``. The signal is estimated as
    ``s_g = max(E_g - m v, 0)``, and ``S_g`` is that of all the *other* inputs. Under the hypothesis
    that input ``g`` carries at most a share ``a_g = allowed_shares[g]`` of the update's signal (what
    clean data of any one validation class does, :func:`clean_input_shares`), its signal is at most
    ``a_g / (1 - a_g) * S_g``, and the p-value is ``P(chi2'(m, a_g / (1 - a_g) * S_g / v) >= E_g / v)``
    (1 when ``a_g >= 1``). Small: the update leans on an input far more than any clean class does —
    a trigger (a backdoor) or a feature the owner's data barely uses.
    """
    from scipy.stats import chi2, ncx2

    if matrix.ndim != 2 or len(allowed_shares) != matrix.shape[0]:
        raise ValidationError("concentration_pvalues needs one allowed share per row of the matrix")
    m = int(matrix.shape[1])
    v = noise_variance(matrix)
    if not (math.isfinite(v) and v > 0):
        return [1.0] * int(matrix.shape[0])
    energy = matrix.detach().to(torch.float64).square().sum(dim=1)
    signal = (energy - m * v).clamp_min(0.0)
    total = float(signal.sum())
    out = []
    for e, s, share in zip(energy.tolist(), signal.tolist(), allowed_shares):
        a = max(float(share), 0.0)
        if a >= 1.0:
            out.append(1.0)
            continue
        lam = a / (1.0 - a) * (total - s) / v  # the others' signal bounds this input's under the hypothesis
        x = e / v
        out.append(float(ncx2.sf(x, m, lam)) if lam > 0 else float(chi2.sf(x, m)))
    return out


def concentrated(pvalues: Sequence[float], *, alpha: float) -> int | None:
    """The input whose p-value is below ``alpha / len(pvalues)`` (Bonferroni), the smallest; else ``None``."""
    if not pvalues:
        return None
    j = min(range(len(pvalues)), key=lambda g: (pvalues[g], g))
    return j if pvalues[j] < alpha / len(pvalues) else None


def fisher_terms(pvalues: Sequence[float]) -> list[float]:
    """``-2 ln p`` of each p-value (p floored at :data:`MIN_PVALUE`): Fisher's method sums these."""
    return [-2.0 * math.log(min(max(float(p), MIN_PVALUE), 1.0)) for p in pvalues]


def fisher_combined(term_sums: Sequence[float], count: int) -> list[float]:
    """Fisher's combined p-value per input, from the sums of ``count`` independent updates'
    :func:`fisher_terms`: ``P(chi2(2 count) >= sum)``. A trigger input that each update leans on a
    little (p ~ 0.01 a round, never below the limit alone) is beyond it after a few rounds."""
    from scipy.stats import chi2

    if count < 1:
        raise ValidationError(f"Fisher's method needs at least one p-value per input, got count {count}")
    return [float(chi2.sf(t, 2 * count)) for t in term_sums]


def clean_input_shares(manifest: Manifest, state: Mapping[str, torch.Tensor], X: Any, y: Any, groups: Any,
                       name: str, axis: int | Sequence[int], shape: Sequence[int] | None = None, *,
                       quantile: float | None = None) -> list[float]:
    """For each input unit of weight ``name``: the largest share of the first-layer gradient energy it
    gets from the clean validation data of any one subgroup.

    Per validation row the gradient of the loss is clipped to norm 1 (as DP-SGD does), the clipped
    gradients are averaged per subgroup (the classes, or the owner's group column; regression
    without groups: all rows), and the energy of ``name`` is split by input unit. An honest update
    trains on a mixture of such subgroups, so no input gets a much larger share of its signal
    than this.

    The validation rows are a sample too: a subgroup of 50 rows can put little on an input that a
    miner's 200 rows of the same population lean on (breast cancer, seed 0: an honest miner with
    the largest shard put 11 % of its signal on 'worst texture', allowed 3.7 %). With ``quantile``
    the share of each subgroup is that quantile over :data:`SHARE_BOOTSTRAPS` Poisson bootstrap
    resamples of its rows (a fixed seed, so an audit replays it): an upper bound of what such data
    puts there. An input clean data never moves (a constant pixel) stays at 0.
    """
    plain, bound = clean_input_bounds(manifest, state, X, y, groups, name, axis, shape, quantile=quantile)
    return plain if bound is None else bound


def clean_input_bounds(manifest: Manifest, state: Mapping[str, torch.Tensor], X: Any, y: Any, groups: Any,
                       name: str, axis: int | Sequence[int], shape: Sequence[int] | None = None, *,
                       quantile: float | None = None) -> tuple[list[float], list[float] | None]:
    """:func:`clean_input_shares` both ways from one pass over the rows: the class means' shares,
    and (with ``quantile``, else ``None``) their bootstrap bound."""
    from torch.func import functional_call, grad, vmap

    from mine.train import training_tensors

    model = build_model(manifest, seed=0)
    model.load_state_dict(dict(state), strict=True)
    model.eval()
    xt, yt, loss_fn = training_tensors(manifest, X, y)
    # the classes (or, for regression, all rows) and the owner's subgroups, if any
    partitions = [yt.numpy() if manifest.task == "classification" else np.zeros(len(xt), dtype=np.int64)]
    if groups is not None:
        partitions.append(np.asarray(groups))
    params = {k: v.detach() for k, v in model.named_parameters()}

    def one_loss(p: dict[str, torch.Tensor], xi: torch.Tensor, ti: torch.Tensor) -> torch.Tensor:
        return loss_fn(functional_call(model, p, (xi.unsqueeze(0),)), ti.unsqueeze(0))

    per_example = vmap(grad(one_loss), in_dims=(None, 0, 0))
    keys = [(p, key) for p, labels in enumerate(partitions) for key in np.unique(labels).tolist()]
    numel = params[name].numel()
    boots = 0
    if quantile is not None:
        if not 0.0 < quantile < 1.0:
            raise ValidationError(f"quantile must be between 0 and 1 (exclusive), got {quantile!r}")
        boots = min(SHARE_BOOTSTRAPS, SHARE_BATCH_ENTRIES // max(numel * len(keys), 1))
        boots = boots if boots >= SHARE_MIN_BOOTSTRAPS else 0  # a first layer too large: class means only
    # per subgroup: row 0 sums every row once, rows 1.. with a Poisson(1) bootstrap weight per row,
    # drawn batch by batch in a fixed order (the batch size depends only on the model: audits replay it)
    gen = torch.Generator().manual_seed(0)
    sums = {key: torch.zeros(1 + boots, numel, dtype=torch.float64) for key in keys}
    batch = max(1, min(SHARE_BATCH_ROWS, SHARE_BATCH_ENTRIES // max(sum(p.numel() for p in params.values()), 1)))
    with torch.no_grad():
        for start in range(0, len(xt), batch):
            rows = slice(start, start + batch)
            g = per_example(params, xt[rows], yt[rows])
            norms = torch.sqrt(sum(g[k].reshape(g[k].shape[0], -1).to(torch.float64).square().sum(dim=1) for k in g))
            scale = (1.0 / norms.clamp_min(1e-12)).clamp(max=1.0)  # clipped to norm 1, as DP-SGD does
            target = g[name].to(torch.float64).reshape(g[name].shape[0], -1) * scale.view(-1, 1)
            for p, key in keys:
                mask = torch.from_numpy(partitions[p][rows] == key)
                if not bool(mask.any()):
                    continue
                w = torch.ones(1 + boots, int(mask.sum()), dtype=torch.float64)
                if boots:
                    w[1:] = torch.poisson(w[1:], generator=gen)
                sums[(p, key)] += w @ target[mask]
    units = (tuple(shape) if shape is not None else tuple(params[name].shape))
    zero = torch.zeros(group_matrix(torch.zeros(units), axis, shape).shape[0], dtype=torch.float64)
    plain, bound = zero, zero
    for key in keys:
        e = torch.stack([group_matrix(row.reshape(units), axis, shape).square().sum(dim=1) for row in sums[key]])
        total = e.sum(dim=1, keepdim=True)
        if float(total[0]) <= 0:
            continue
        share = e / total.clamp_min(1e-300)
        plain = torch.maximum(plain, share[0])
        if boots:
            bound = torch.maximum(bound, torch.quantile(share[1:], quantile, dim=0))  # type: ignore[arg-type]
    return [float(x) for x in plain], [float(x) for x in bound] if boots else None


def signal_shares(matrix: torch.Tensor) -> list[float]:
    """Each row's share of the matrix's signal energy, ``max(E_g - m v, 0) / sum``.

    The estimate :func:`concentration_pvalues` tests; for the verdict's text.
    """
    m = int(matrix.shape[1])
    signal = (matrix.detach().to(torch.float64).square().sum(dim=1) - m * noise_variance(matrix)).clamp_min(0.0)
    total = float(signal.sum())
    return [float(x) / total if total > 0 else 0.0 for x in signal]
