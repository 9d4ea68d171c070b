"""Differentially private local training (DP-SGD) and its privacy accounting.

:func:`train_dp` has the shape of :func:`mine.train.train` and returns the same
:class:`~mine.train.TrainResult` plus the (ε, δ) the update costs and the settings that produced
them (:class:`DPResult`). Each step is DP-SGD (Abadi et al. 2016):

* **Poisson sampling** — every example joins a step's batch independently with probability
  ``sample_rate`` (the sampling the RDP analysis of the subsampled Gaussian assumes);
* **per-example clipping** — per-example gradients (``torch.func``: ``vmap(grad(loss))``), each
  scaled to L2 norm at most ``max_grad_norm``;
* **Gaussian noise** — ``N(0, (noise_multiplier · max_grad_norm)²)`` added to the sum, divided by
  the expected batch size ``sample_rate · n`` (Opacus' convention), then an ordinary optimiser step.

The accounting is Opacus' (:class:`opacus.accountants.RDPAccountant`, history
``[(noise_multiplier, sample_rate, steps)]``; its RDP analysis module is loaded on its own, see
:func:`_rdp`), so the ε recorded in an update is exactly what Opacus
reports for the recorded settings; :func:`epsilon_for` recomputes it from the update's metadata and
:func:`composed_epsilon` composes several updates' histories on one dataset (RDP composition, much
tighter than adding their ε). Per-example gradients come from ``torch.func`` rather than Opacus'
``GradSampleModule``: for the Linear layers of a manifest model the clipped sum has a closed
form (one backward pass, see :func:`_linear_clipped_sum`; other models use ``torch.func``), about 4x
faster than Opacus' ``make_private`` path on the demo's shards (``python -m bench.dp_time``); the
mechanism (sample, clip, noise) is the same.

The noise generator is seeded from the OS's CSPRNG on every call, never from the training ``seed``
(which only fixes sampling and dropout): a noise seed an attacker can guess lets them subtract the
noise and voids the guarantee. Tests may pass ``noise_seed`` to make a run repeatable.

The privacy unit is one example (row) of the miner's dataset; δ defaults to ``min(1e-5, 1/n)``.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
import math
import secrets
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch.func import functional_call, grad, vmap

from mine.eager import optimizer_step
from mine.errors import ConfigError, ValidationError
from mine.model import Manifest
from mine.train import TrainResult, make_optimizer, thread_count, training_tensors

__all__ = [
    "ACCOUNTANT",
    "DEFAULT_DP",
    "DEFAULT_DP_REGRESSION",
    "DPRecord",
    "DPResult",
    "DPSettings",
    "composed_epsilon",
    "default_delta",
    "default_settings",
    "epsilon_for",
    "examples_bucket",
    "noise_for_epsilon",
    "parse_dp_metadata",
    "train_dp",
]

#: Name of the accountant recorded in updates (Opacus' RDP accountant, its default orders).
ACCOUNTANT = "rdp"
#: Cap of the default δ: ``min(DELTA_CAP, 1/n)``.
DELTA_CAP = 1e-5


def default_delta(n: int) -> float:
    """δ for a dataset of ``n`` examples: ``min(1e-5, 1/n)`` (never more than 1/n)."""
    return min(DELTA_CAP, 1.0 / max(int(n), 1))


def examples_bucket(n: int) -> int:
    """The power of two ``b`` with ``b <= n < 2b`` (0 for n = 0): what an update says about its size."""
    n = int(n)
    return 0 if n <= 0 else 1 << (n.bit_length() - 1)


#: The RDP orders Opacus' ``RDPAccountant`` searches (its ``DEFAULT_ALPHAS``; the tests check they agree).
RDP_ORDERS = tuple([1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)))


@functools.cache
def _rdp() -> ModuleType:
    """Opacus' RDP analysis (``opacus/accountants/analysis/rdp.py``, which needs only numpy and scipy),
    loaded without the ``opacus`` package: its ``__init__`` builds Opacus' whole training stack (grad
    samplers, optimizers, ``torch.distributed``), about 3.5 s of every process that accounts for ε."""
    found = importlib.util.find_spec("opacus")  # a top-level package: found, not imported
    if found is None or not found.submodule_search_locations:
        raise ConfigError("the opacus package (its RDP accountant) is not installed: run `make setup`")
    path = Path(next(iter(found.submodule_search_locations))) / "accountants" / "analysis" / "rdp.py"
    spec = importlib.util.spec_from_file_location("mine._opacus_rdp", path)
    if spec is None or spec.loader is None or not path.is_file():
        raise ConfigError(f"Opacus' RDP analysis is not at {path}: install opacus==1.6.0 (`make setup`)")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.lru_cache(maxsize=256)
def epsilon_for(noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> float:
    """ε of ``steps`` DP-SGD steps (Poisson rate ``sample_rate``, noise σ) at ``delta``, by Opacus' RDP accountant."""
    return composed_epsilon([(noise_multiplier, sample_rate, steps)], delta)


def composed_epsilon(history: Iterable[tuple[float, float, int]], delta: float) -> float:
    """ε of a sequence of DP-SGD runs on the same data, composed in RDP (Opacus' accountant)."""
    history = list(history)
    if not history:
        return 0.0
    if any(s <= 0 for s, _, _ in history):
        return math.inf
    # RDPAccountant.get_epsilon: the orders' RDP summed over the runs, converted at the best order
    rdp = sum(_rdp().compute_rdp(q=float(q), noise_multiplier=float(s), steps=int(t), orders=RDP_ORDERS)
              for s, q, t in history)
    with warnings.catch_warnings():  # "optimal order is the smallest alpha": the bound is still valid
        warnings.simplefilter("ignore", UserWarning)
        return float(_rdp().get_privacy_spent(orders=RDP_ORDERS, rdp=rdp, delta=float(delta))[0])


def _epsilon_integer_orders(noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> float:
    orders = [a for a in RDP_ORDERS if float(a).is_integer()]
    rdp = _rdp().compute_rdp(q=sample_rate, noise_multiplier=noise_multiplier, steps=steps, orders=orders)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return float(_rdp().get_privacy_spent(orders=orders, rdp=rdp, delta=delta)[0])


@functools.lru_cache(maxsize=256)
def noise_for_epsilon(target_epsilon: float, delta: float, sample_rate: float, steps: int) -> float:
    """The smallest noise multiplier (within 0.1%) whose ε at ``delta`` is at most ``target_epsilon``.

    Solved by bisection over the accountant's *integer* RDP orders (about 30x faster than all of
    Opacus' default orders, which include fractional ones); an ε over fewer orders is never smaller,
    so the full accountant's ε at the returned noise is at most the target (a hair under it).
    """
    if not (math.isfinite(target_epsilon) and target_epsilon > 0):
        raise ValidationError(f"target epsilon must be a finite number > 0, got {target_epsilon!r}")
    lo, hi = 0.01, 1.0
    while _epsilon_integer_orders(hi, sample_rate, steps, delta) > target_epsilon:
        lo, hi = hi, hi * 2
        if hi > 1e4:
            raise ValidationError(f"epsilon {target_epsilon} at delta {delta} needs more than 10^4 noise; "
                                  "allow a larger epsilon or take fewer steps")
    while hi - lo > 1e-3 * hi:
        mid = (lo + hi) / 2
        if _epsilon_integer_orders(mid, sample_rate, steps, delta) > target_epsilon:
            lo = mid
        else:
            hi = mid
    return hi


# --------------------------------------------------------------------------------------------
# Settings and records
# --------------------------------------------------------------------------------------------


def _pos(name: str, value: Any, *, hi: float | None = None, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValidationError(f"DP setting {name} must be a finite number > 0, got {value!r}")
    if hi is not None and value > hi:
        raise ValidationError(f"DP setting {name} must be at most {hi}, got {value!r}")
    return float(value)


@dataclasses.dataclass(frozen=True)
class DPSettings:
    """How to train privately. Give ``target_epsilon`` (the noise is solved for) or ``noise_multiplier``.

    ``sample_rate`` is the Poisson sampling probability q (1.0 = full-batch steps); ``steps`` the
    number of DP-SGD steps (default ``ceil(epochs / sample_rate)``); ``delta`` defaults to
    :func:`default_delta`; ``lr`` / ``optimizer`` default to the manifest's training settings.
    """

    target_epsilon: float | None = None
    noise_multiplier: float | None = None
    max_grad_norm: float = 1.0
    delta: float | None = None
    sample_rate: float = 0.5
    epochs: int = 5
    steps: int | None = None
    lr: float | None = None
    optimizer: str | None = None

    def __post_init__(self) -> None:
        if (self.target_epsilon is None) == (self.noise_multiplier is None):
            raise ValidationError("give exactly one of DP target_epsilon or noise_multiplier")
        _pos("target_epsilon", self.target_epsilon, hi=100.0, allow_none=True)
        _pos("noise_multiplier", self.noise_multiplier, hi=1000.0, allow_none=True)
        _pos("max_grad_norm", self.max_grad_norm, hi=1e6)
        _pos("delta", self.delta, hi=0.1, allow_none=True)
        _pos("sample_rate", self.sample_rate, hi=1.0)
        _pos("lr", self.lr, hi=1000.0, allow_none=True)  # a step moves at most lr x max_grad_norm
        for name in ("epochs", "steps"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 100_000):
                raise ValidationError(f"DP setting {name} must be an integer between 1 and 100000, got {v!r}")
        if self.optimizer not in (None, "sgd", "adam"):
            raise ValidationError(f"DP optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DPSettings:
        """Settings from JSON (e.g. a manifest's ``training.dp``); unknown keys are an error."""
        if not isinstance(data, Mapping):
            raise ValidationError("DP settings must be an object")
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValidationError(f"unknown DP setting(s) {unknown}")
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    def replace(self, **changes: Any) -> DPSettings:
        """A copy with ``changes`` (``target_epsilon`` clears ``noise_multiplier`` and vice versa)."""
        if changes.get("target_epsilon") is not None:
            changes.setdefault("noise_multiplier", None)
        if changes.get("noise_multiplier") is not None:
            changes.setdefault("target_epsilon", None)
        return dataclasses.replace(self, **changes)

    def optimizer_and_lr(self, training: Mapping[str, Any]) -> tuple[str, float]:
        """The optimizer and learning rate these settings train with, over a manifest's ``training``."""
        return str(self.optimizer or training.get("optimizer")), float(self.lr if self.lr is not None else training["lr"])

    def total_steps(self) -> int:
        return self.steps if self.steps is not None else max(1, math.ceil(self.epochs / self.sample_rate))

    def resolve(self, n: int) -> DPRecord:
        """The concrete mechanism for ``n`` examples: noise solved, ε computed by the accountant."""
        delta = self.delta if self.delta is not None else default_delta(n)
        steps = self.total_steps()
        sigma = self.noise_multiplier
        if sigma is None:
            assert self.target_epsilon is not None
            sigma = noise_for_epsilon(self.target_epsilon, delta, self.sample_rate, steps)
        eps = epsilon_for(sigma, self.sample_rate, steps, delta)
        return DPRecord(epsilon=eps, delta=delta, noise_multiplier=sigma, max_grad_norm=self.max_grad_norm,
                        sample_rate=self.sample_rate, steps=steps, accountant=ACCOUNTANT)


#: The default of ``mine train`` for classification: ε = 4 per update (δ = min(1e-5, 1/n)) from 10
#: full-batch DP-SGD steps (every example in every step: at a few hundred rows per miner, fewer and
#: less noisy steps beat Poisson-subsampled ones), clip 1, plain SGD at lr 2 (a step moves at most
#: 2). In the demo's market (8 miners, 5 rounds, server lr 1) this keeps accuracy within ~4 points of
#: non-private training and trains faster than the plain default (10 full-batch steps vs 5 epochs of
#: mini-batches). ``bench/dp_frontier.py`` measures the frontier behind these numbers.
DEFAULT_DP = DPSettings(target_epsilon=4.0, max_grad_norm=1.0, sample_rate=1.0, steps=10, optimizer="sgd", lr=2.0)
#: Regression on raw targets: per-example gradients scale with the target's units, so the clipped
#: step must be larger (tuned on diabetes, targets ~25–350: within ~5% of the non-private MSE).
DEFAULT_DP_REGRESSION = DEFAULT_DP.replace(lr=10.0)


def default_settings(manifest: Manifest) -> DPSettings:
    """A model's DP defaults: ours for its task, with the manifest's ``training.dp`` on top.

    A partial ``training.dp`` (say ``{"target_epsilon": 8}``) keeps the tuned values of the rest.
    """
    base = DEFAULT_DP if manifest.task == "classification" else DEFAULT_DP_REGRESSION
    overrides = manifest.training.get("dp")
    if not overrides:
        return base
    if not isinstance(overrides, Mapping):
        raise ValidationError("manifest 'training.dp' must be an object of DP settings")
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(DPSettings)})
    if unknown:
        raise ValidationError(f"unknown DP setting(s) {unknown} in the manifest's training.dp")
    return base.replace(**dict(overrides))


@dataclasses.dataclass(frozen=True)
class DPRecord:
    """What an update publishes about its privacy: the ``dp`` metadata JSON."""

    epsilon: float
    delta: float
    noise_multiplier: float
    max_grad_norm: float
    sample_rate: float
    steps: int
    accountant: str = ACCOUNTANT

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True, separators=(",", ":"))

    @property
    def history(self) -> tuple[float, float, int]:
        """The accountant history entry of this run."""
        return (self.noise_multiplier, self.sample_rate, self.steps)


def parse_dp_metadata(value: str | None) -> DPRecord | None:
    """An update's ``dp`` metadata: ``None`` for ``"off"``; raises ValidationError if missing or malformed."""
    if value is None:
        raise ValidationError("the update does not say whether it was trained with DP (no 'dp' metadata)")
    if value == "off":
        return None
    try:
        raw = json.loads(value)
        record = DPRecord(
            epsilon=float(raw["epsilon"]), delta=float(raw["delta"]), noise_multiplier=float(raw["noise_multiplier"]),
            max_grad_norm=float(raw["max_grad_norm"]), sample_rate=float(raw["sample_rate"]),
            steps=int(raw["steps"]), accountant=str(raw["accountant"]),
        )
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValidationError(f"the update's 'dp' metadata is malformed ({exc})") from None
    if record.accountant != ACCOUNTANT:
        raise ValidationError(f"unknown DP accountant {record.accountant!r}")
    for name in ("epsilon", "delta", "noise_multiplier", "max_grad_norm", "sample_rate"):
        v = getattr(record, name)
        if not (math.isfinite(v) and v > 0):
            raise ValidationError(f"the update's dp {name} must be a finite number > 0, got {v!r}")
    if record.sample_rate > 1 or record.delta >= 1 or record.steps < 1:
        raise ValidationError("the update's dp settings are out of range (sample_rate <= 1, delta < 1, steps >= 1)")
    return record


@dataclasses.dataclass(frozen=True)
class DPResult:
    """Outcome of :func:`train_dp`: the plain :class:`TrainResult` plus the privacy it cost."""

    result: TrainResult
    record: DPRecord
    settings: DPSettings

    @property
    def epsilon(self) -> float:
        return self.record.epsilon

    @property
    def delta(self) -> float:
        return self.record.delta


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def _closed_form_ok(model: torch.nn.Module) -> bool:
    """True if every parameter belongs to a top-level Linear of a Sequential (the closed-form path)."""
    if not isinstance(model, torch.nn.Sequential):
        return False
    return all(isinstance(m, torch.nn.Linear) or not any(True for _ in m.parameters()) for m in model)


def _linear_clipped_sum(model: torch.nn.Module, x: torch.Tensor, t: torch.Tensor,
                        loss_fn: Callable[..., torch.Tensor], C: float) -> torch.Tensor:
    """Sum over examples of per-example gradients clipped to norm ``C``, flattened in parameter order.

    For a Linear layer the per-example gradient is the outer product ``g_i a_iᵀ`` of the gradient
    at its output and its input, so ``‖∇W_i‖² + ‖∇b_i‖² = ‖g_i‖² (‖a_i‖² + 1)`` and the clipped sum
    is ``(f ⊙ G)ᵀ A`` — one backward pass, no per-example tensors (the "ghost clipping" identity).
    Valid because every layer of a manifest model treats examples independently.
    """
    inputs: list[torch.Tensor] = []
    outputs: list[torch.Tensor] = []
    layers: list[torch.nn.Linear] = []
    h = x
    for m in model:
        if isinstance(m, torch.nn.Linear):
            inputs.append(h.detach())
            h = m(h)
            outputs.append(h)
            layers.append(m)
        else:
            h = m(h)
    loss = loss_fn(h, t, reduction="sum")
    gouts = torch.autograd.grad(loss, outputs)
    sq = torch.zeros(x.shape[0])
    for a, g, m in zip(inputs, gouts, layers):
        gg = g.pow(2).sum(1)
        sq += gg * (a.pow(2).sum(1) + (1.0 if m.bias is not None else 0.0))
    factor = (C / (sq.sqrt() + 1e-6)).clamp(max=1.0).unsqueeze(1)
    parts = []
    for a, g, m in zip(inputs, gouts, layers):
        fg = factor * g
        parts.append((fg.T @ a).reshape(-1))
        if m.bias is not None:
            parts.append(fg.sum(0))
    return torch.cat(parts)


def _vmap_clipped_sum(model: torch.nn.Module, x: torch.Tensor, t: torch.Tensor,
                      loss_fn: Callable[..., torch.Tensor], C: float) -> torch.Tensor:
    """Like :func:`_linear_clipped_sum` for any model, with ``torch.func`` per-example gradients."""
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = dict(model.named_buffers())

    def one_loss(p: dict[str, torch.Tensor], xi: torch.Tensor, ti: torch.Tensor) -> torch.Tensor:
        return loss_fn(functional_call(model, (p, buffers), (xi.unsqueeze(0),)), ti.unsqueeze(0))

    grads = vmap(grad(one_loss), in_dims=(None, 0, 0), randomness="different")(params, x, t)
    flat = torch.cat([grads[k].reshape(x.shape[0], -1) for k in params], dim=1)
    factor = (C / (flat.norm(dim=1) + 1e-6)).clamp(max=1.0)
    return factor @ flat


def train_dp(
    model: torch.nn.Module,
    X: np.ndarray,
    y: np.ndarray,
    manifest: Manifest,
    settings: DPSettings | None = None,
    *,
    seed: int = 0,
    noise_seed: int | None = None,
    on_batch: Callable[[int, int], None] | None = None,
    threads: int | None = None,
) -> DPResult:
    """Train ``model`` in place with DP-SGD on ``(X, y)``; like :func:`mine.train.train` plus (ε, δ).

    ``settings`` default to :func:`default_settings`. ``seed`` fixes Poisson sampling and dropout;
    the noise comes from a CSPRNG-seeded generator unless ``noise_seed`` is given (tests only).
    The noisy sum is divided by the expected batch size ``sample_rate · n``, as Opacus does (``n``
    is treated as public, to within the power-of-two bucket the update states). ``on_batch(done, total)`` is called after every
    step. The model is left in eval mode; the returned ``result.loss``/``metric`` are measured on the
    local data after training and are for the miner's eyes only (not published).
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValidationError(f"seed must be an integer, got {seed!r}")
    xt, yt, loss_fn = training_tensors(manifest, X, y)
    n = xt.shape[0]
    classification = manifest.task == "classification"
    settings = settings or default_settings(manifest)
    record = settings.resolve(n)
    optimizer, lr = settings.optimizer_and_lr(manifest.training)
    opt = make_optimizer(optimizer, model.parameters(), lr)
    params = dict(model.named_parameters())
    names = list(params)
    clipped_sum = _linear_clipped_sum if _closed_form_ok(model) else _vmap_clipped_sum
    C = float(record.max_grad_norm)
    std = record.noise_multiplier * C
    scale = 1.0 / (record.sample_rate * n)
    sample_gen = torch.Generator().manual_seed(int(seed))
    noise_gen = torch.Generator().manual_seed(secrets.randbits(63) if noise_seed is None else int(noise_seed))
    total = record.steps
    if threads is None:
        threads = 1 if manifest.parameter_count <= 1_000_000 else torch.get_num_threads()

    with thread_count(int(threads)), torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model.train()
        start = time.perf_counter()
        for step in range(total):
            mask = torch.rand(n, generator=sample_gen) < record.sample_rate
            idx = mask.nonzero().squeeze(1)
            if idx.numel():
                summed = clipped_sum(model, xt[idx], yt[idx], loss_fn, C)
            else:
                summed = torch.zeros(sum(p.numel() for p in params.values()))
            noisy = (summed + torch.normal(0.0, std, summed.shape, generator=noise_gen)) * scale
            offset = 0
            for k in names:
                p = params[k]
                p.grad = noisy[offset:offset + p.numel()].view_as(p).clone()
                offset += p.numel()
            optimizer_step(opt)
            opt.zero_grad(set_to_none=True)
            if on_batch is not None:
                on_batch(step + 1, total)
        seconds = time.perf_counter() - start

    model.eval()
    with thread_count(int(threads)), torch.inference_mode():
        out = model(xt)
        final_loss = float(loss_fn(out, yt))
        metric = int((out.argmax(dim=1) == yt).sum()) / n if classification else final_loss
    return DPResult(TrainResult(examples=n, loss=final_loss, metric=metric, seconds=seconds), record, settings)
