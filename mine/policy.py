"""Acceptance policies: may this update become the next model version?

Like a federated-learning *strategy*, a policy is a small class with keyword-only settings and one
method, :meth:`Policy.decide`; the owner's client picks one by name (``--policy NAME``) from
:data:`POLICIES`. The arithmetic lives in pure rule functions, each returning ``None`` (pass) or a
:class:`Rejection` carrying the reason code the contract records:

====  =====================  ==============================================================
code  rule                   meaning
====  =====================  ==============================================================
1     :func:`check_structure`  wrong tensor names/shapes/dtype, NaN/Inf, or too large
2     :func:`check_improvement` the validation score does not improve by the margin
3     :func:`check_subgroups`   some subgroup (class) gets worse by more than the tolerance
4     :func:`check_outlier`     the update norm is an outlier among accepted updates
5     (client)                 unreadable: fetch / CID / parse failure
====  =====================  ==============================================================

:class:`DefaultPolicy` applies an update to the *current* model (whatever version it was trained
from), scaled by a server learning rate and clipped to a norm bound derived from the norms of
previously accepted updates (norm bounding is the standard defence against backdoors hidden in
otherwise useful updates), and accepts it only if every rule passes.

Score comparisons are done on the on-chain fixed-point values (:func:`mine.evaluate.score_to_chain`,
6 decimals), so a decision is exactly reproducible from the scores an auditor recomputes.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch

from mine.errors import ValidationError
from mine.evaluate import EvalResult, evaluate, score_to_chain
from mine.model import (Manifest, UnreadableError, apply_update, build_model, parameter_shapes, read_update,
                        update_norm)
from mine.reasons import (ACCEPTED, NO_IMPROVEMENT, OUTLIER_NORM, REASONS, STRUCTURE,  # noqa: F401 - re-exported
                          SUBGROUP_REGRESSION, UNREADABLE)

__all__ = [
    "ACCEPTED",
    "AcceptAllPolicy",
    "Decision",
    "DefaultPolicy",
    "POLICIES",
    "Policy",
    "REASONS",
    "Rejection",
    "check_improvement",
    "check_outlier",
    "check_structure",
    "check_subgroups",
    "make_policy",
    "norm_bound",
]

#: Floor of the robust spread in :func:`check_outlier`, relative to the median norm.
MIN_RELATIVE_SPREAD = 0.25
#: Consistency constant that makes the MAD estimate a standard deviation for normal data.
MAD_TO_SIGMA = 1.4826


@dataclasses.dataclass(frozen=True)
class Rejection:
    """Why a rule failed: the on-chain ``code`` and a sentence with the numbers."""

    code: int
    reason: str

    def __str__(self) -> str:
        return f"[{self.code}] {self.reason}"


Delta = Mapping[str, torch.Tensor]


# --------------------------------------------------------------------------------------------
# Rules (pure functions)
# --------------------------------------------------------------------------------------------


def check_structure(manifest: Manifest, delta: bytes | Delta, *, max_bytes: int | None = None) -> Rejection | None:
    """Code 1 unless ``delta`` has exactly the model's float32 parameters, all finite, within size.

    ``delta`` may be the update bytes (then parsed with :func:`mine.model.read_update`; bytes that
    are not safetensors at all give code 5) or an already parsed dict of tensors, whose float32
    size must not exceed ``max_bytes`` (default ``manifest.max_weight_bytes``).
    """
    if isinstance(delta, (bytes, bytearray, memoryview)):
        try:
            read_update(manifest, bytes(delta), max_bytes=max_bytes)
        except UnreadableError as exc:
            return Rejection(UNREADABLE, str(exc))
        except ValidationError as exc:
            return Rejection(STRUCTURE, str(exc))
        return None
    if not isinstance(delta, Mapping):
        return Rejection(STRUCTURE, f"update must be bytes or a dict of tensors, got {type(delta).__name__}")
    expected = parameter_shapes(manifest)
    if set(delta) != set(expected):
        missing, extra = sorted(set(expected) - set(delta)), sorted(set(delta) - set(expected))
        return Rejection(STRUCTURE, f"update tensors do not match the model: missing {missing[:8]}, unexpected {extra[:8]}")
    size = 0
    for name, shape in expected.items():
        t = delta[name]
        if not isinstance(t, torch.Tensor) or t.dtype != torch.float32:
            return Rejection(STRUCTURE, f"tensor {name!r} must be a float32 torch.Tensor")
        if tuple(t.shape) != shape:
            return Rejection(STRUCTURE, f"tensor {name!r} has shape {list(t.shape)}; the model needs {list(shape)}")
        if not bool(torch.isfinite(t).all()):
            return Rejection(STRUCTURE, f"tensor {name!r} contains NaN or infinite values")
        size += 4 * t.numel()
    limit = manifest.max_weight_bytes if max_bytes is None else max_bytes
    if size > limit:
        return Rejection(STRUCTURE, f"update holds {size} bytes of tensors, more than the limit of {limit}")
    return None


def _gain(before: float, after: float, higher_is_better: bool) -> int:
    """Improvement in on-chain fixed-point units (positive = better)."""
    b, a = score_to_chain(before), score_to_chain(after)
    return a - b if higher_is_better else b - a


def check_improvement(score_before: float, score_after: float, *, higher_is_better: bool,
                      min_improvement: float) -> Rejection | None:
    """Code 2 unless the score improves by at least ``min_improvement`` (and strictly).

    Compared on the fixed-point chain values: pass iff ``gain >= max(score_to_chain(min_improvement), 1)``
    where ``gain`` is ``after - before`` (or ``before - after`` when lower is better). A margin of
    0 therefore still requires an improvement of at least 1e-6.
    """
    if not (min_improvement >= 0 and math.isfinite(min_improvement)):
        raise ValidationError(f"min_improvement must be a finite number >= 0, got {min_improvement!r}")
    if not (math.isfinite(score_before) and math.isfinite(score_after)):
        return Rejection(NO_IMPROVEMENT, f"score is not finite (before {score_before!r}, after {score_after!r})")
    gain = _gain(score_before, score_after, higher_is_better)
    need = max(score_to_chain(min_improvement), 1)
    if gain >= need:
        return None
    direction = "higher" if higher_is_better else "lower"
    return Rejection(NO_IMPROVEMENT,
                     f"validation score {score_before:.6f} -> {score_after:.6f} ({direction} is better): "
                     f"gain {gain / 1e6:.6f} is below the required {need / 1e6:.6f}")


def check_subgroups(before: Mapping[str, float], after: Mapping[str, float], *, higher_is_better: bool,
                    tolerance: float) -> Rejection | None:
    """Code 3 if any subgroup's score gets worse by more than ``tolerance`` (fixed-point compared).

    A worsening of exactly ``tolerance`` passes. A subgroup missing from ``after`` fails.
    """
    if not (tolerance >= 0 and math.isfinite(tolerance)):
        raise ValidationError(f"tolerance must be a finite number >= 0, got {tolerance!r}")
    allowed = score_to_chain(tolerance)
    worst: tuple[int, str] | None = None
    for key in sorted(before):
        if key not in after:
            return Rejection(SUBGROUP_REGRESSION, f"subgroup {key!r} has no score after the update")
        b, a = before[key], after[key]
        if not (math.isfinite(b) and math.isfinite(a)):
            return Rejection(SUBGROUP_REGRESSION, f"subgroup {key!r} score is not finite ({b!r} -> {a!r})")
        loss = -_gain(b, a, higher_is_better)
        if loss > allowed and (worst is None or loss > worst[0]):
            worst = (loss, key)
    if worst is None:
        return None
    key = worst[1]
    return Rejection(SUBGROUP_REGRESSION,
                     f"subgroup {key!r} got worse: {before[key]:.6f} -> {after[key]:.6f} "
                     f"(by {worst[0] / 1e6:.6f}, tolerance {tolerance:.6f})")


def _robust_limit(accepted_norms: Sequence[float], factor: float) -> tuple[float, float, float]:
    med = statistics.median(accepted_norms)
    mad = statistics.median(abs(x - med) for x in accepted_norms)
    sigma = max(MAD_TO_SIGMA * mad, MIN_RELATIVE_SPREAD * med)
    return med + factor * sigma, med, sigma


def check_outlier(norm: float, accepted_norms: Sequence[float], *, factor: float, min_history: int
                  ) -> Rejection | None:
    """Code 4 if ``norm`` is far above the norms of previously accepted updates.

    With at least ``min_history`` accepted norms: reject iff
    ``norm > median + factor * max(1.4826 * MAD, 0.25 * median)`` (MAD = median absolute deviation;
    the floor keeps a tight history from rejecting everything). Small norms are never outliers (a
    too-small update simply fails to improve). With less history everything finite passes.
    """
    if not (factor > 0 and math.isfinite(factor)):
        raise ValidationError(f"factor must be a finite number > 0, got {factor!r}")
    if not math.isfinite(norm) or norm < 0:
        return Rejection(OUTLIER_NORM, f"update norm {norm!r} is not a finite non-negative number")
    hist = [float(x) for x in accepted_norms]
    if len(hist) < max(int(min_history), 1):
        return None
    limit, med, sigma = _robust_limit(hist, factor)
    if norm <= limit:
        return None
    return Rejection(OUTLIER_NORM,
                     f"update norm {norm:.6g} exceeds {limit:.6g} = median {med:.6g} + {factor:g} x robust "
                     f"spread {sigma:.6g} of {len(hist)} accepted update norms ({norm / med if med else math.inf:.1f}x "
                     "the median)")


def norm_bound(accepted_norms: Sequence[float], *, factor: float, min_history: int) -> float | None:
    """Clipping bound ``median(accepted_norms) * factor``, or ``None`` with too little history."""
    hist = [float(x) for x in accepted_norms]
    if len(hist) < max(int(min_history), 1):
        return None
    return statistics.median(hist) * factor


# --------------------------------------------------------------------------------------------
# Policies
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Decision:
    """The outcome of :meth:`Policy.decide`.

    ``reason_code`` is 0 when accepted, else a key of :data:`REASONS`. ``score_before`` is the
    current model's validation score; ``score_after`` the score with the (scaled, clipped) update
    applied, or NaN when the update was rejected before evaluation (codes 1, 4, 5). ``new_state``
    is the next model version's state (accepted only). ``norm`` is the raw update's L2 norm (NaN if
    unreadable) — record it in the accepted-norm history when accepted. ``clip_norm`` is the bound
    the update was clipped to (``None`` if unbounded).
    """

    accepted: bool
    reason_code: int
    reason: str
    score_before: float
    score_after: float
    new_state: dict[str, torch.Tensor] | None
    norm: float
    per_group_before: dict[str, float] = dataclasses.field(default_factory=dict)
    per_group_after: dict[str, float] = dataclasses.field(default_factory=dict)
    clip_norm: float | None = None
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def chain_score(self) -> int:
        """The score to report on chain: ``score_after`` if evaluated, else ``score_before``, else 0."""
        for s in (self.score_after, self.score_before):
            if math.isfinite(s):
                return score_to_chain(s)
        return 0


Validation = tuple[Any, ...]  # (X, y) or (X, y, groups)


@runtime_checkable
class Policy(Protocol):
    """What the owner's client needs from an acceptance policy."""

    name: ClassVar[str]

    def decide(self, manifest: Manifest, current_state: Mapping[str, torch.Tensor], delta: bytes | Delta,
               validation: Validation, accepted_norms: Sequence[float] = ()) -> Decision:
        """Judge one update against the current model; never raises on bad update bytes."""
        ...

    def settings(self) -> dict[str, Any]:
        """The policy's settings, for logs and auditors."""
        ...


def _unpack_validation(validation: Validation) -> tuple[Any, Any, Any]:
    if not isinstance(validation, (tuple, list)) or len(validation) not in (2, 3):
        raise ValidationError("validation must be a tuple (X, y) or (X, y, groups)")
    X, y = validation[0], validation[1]
    groups = validation[2] if len(validation) == 3 else None
    return X, y, groups


def _parse_delta(manifest: Manifest, delta: bytes | Delta) -> tuple[dict[str, torch.Tensor] | None,
                                                                    dict[str, str], Rejection | None]:
    if isinstance(delta, (bytes, bytearray, memoryview)):
        try:
            tensors, meta = read_update(manifest, bytes(delta))
        except UnreadableError as exc:
            return None, {}, Rejection(UNREADABLE, str(exc))
        except ValidationError as exc:
            return None, {}, Rejection(STRUCTURE, str(exc))
        return tensors, meta, None
    rejection = check_structure(manifest, delta)
    return (None if rejection else dict(delta)), {}, rejection


def _score(manifest: Manifest, state: Mapping[str, torch.Tensor], X: Any, y: Any, groups: Any) -> EvalResult:
    model = build_model(manifest, seed=0)
    model.load_state_dict(dict(state), strict=True)
    return evaluate(model, X, y, manifest, groups=groups)


def _rejected(rej: Rejection, before: EvalResult, *, norm: float, meta: dict[str, str],
              after: EvalResult | None = None, clip: float | None = None) -> Decision:
    return Decision(False, rej.code, rej.reason, before.score, after.score if after else math.nan, None, norm,
                    dict(before.per_group), dict(after.per_group) if after else {}, clip, meta)


@dataclasses.dataclass(frozen=True, kw_only=True)
class DefaultPolicy:
    """Structure, outlier-norm, improvement and subgroup checks, with a clipped, scaled update.

    Settings (keyword-only):

    * ``min_improvement`` — margin the overall score must improve by (0 = any strict gain);
    * ``subgroup_tolerance`` — largest allowed worsening of any subgroup (class) score;
    * ``outlier_factor`` — robust z-score above which an update norm is an outlier (code 4);
    * ``min_history`` — accepted norms needed before outlier checks and clipping apply;
    * ``history_window`` — only the most recent this-many accepted norms are used;
    * ``server_lr`` — the delta is multiplied by this before it is added (1 = plain sum);
    * ``clip_norm_factor`` — the delta is clipped to ``median(accepted norms) * factor``.
    """

    name: ClassVar[str] = "default"
    min_improvement: float = 0.0
    subgroup_tolerance: float = 0.1
    outlier_factor: float = 6.0
    min_history: int = 3
    history_window: int = 20
    server_lr: float = 0.5
    clip_norm_factor: float = 1.0

    def __post_init__(self) -> None:
        for field in ("min_improvement", "subgroup_tolerance"):
            v = getattr(self, field)
            if not (math.isfinite(v) and v >= 0):
                raise ValidationError(f"{field} must be a finite number >= 0, got {v!r}")
        for field in ("outlier_factor", "server_lr", "clip_norm_factor"):
            v = getattr(self, field)
            if not (math.isfinite(v) and v > 0):
                raise ValidationError(f"{field} must be a finite number > 0, got {v!r}")
        for field in ("min_history", "history_window"):
            v = getattr(self, field)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValidationError(f"{field} must be a positive integer, got {v!r}")

    def settings(self) -> dict[str, Any]:
        """The settings as a dict (with ``policy`` = the registry name)."""
        return {"policy": self.name, **dataclasses.asdict(self)}

    def decide(self, manifest: Manifest, current_state: Mapping[str, torch.Tensor], delta: bytes | Delta,
               validation: Validation, accepted_norms: Sequence[float] = ()) -> Decision:
        """Judge ``delta`` (update bytes or parsed tensors) against ``current_state``.

        Order: structure (1/5) → outlier norm (4) → apply ``server_lr``-scaled delta clipped to
        ``median(recent accepted norms) * clip_norm_factor`` → improvement (2) → subgroups (3).
        """
        X, y, groups = _unpack_validation(validation)
        before = _score(manifest, current_state, X, y, groups)
        tensors, meta, rej = _parse_delta(manifest, delta)
        if rej is not None or tensors is None:
            return _rejected(rej, before, norm=math.nan, meta=meta)  # type: ignore[arg-type]
        norm = update_norm(tensors)
        history = [float(v) for v in accepted_norms][-self.history_window:]
        rej = check_outlier(norm, history, factor=self.outlier_factor, min_history=self.min_history)
        if rej is not None:
            return _rejected(rej, before, norm=norm, meta=meta)
        clip = norm_bound(history, factor=self.clip_norm_factor, min_history=self.min_history)
        new_state = apply_update(current_state, tensors, scale=self.server_lr, max_norm=clip)
        after = _score(manifest, new_state, X, y, groups)
        rej = check_improvement(before.score, after.score, higher_is_better=manifest.higher_is_better,
                                min_improvement=self.min_improvement)
        if rej is None:
            rej = check_subgroups(before.per_group, after.per_group, higher_is_better=manifest.higher_is_better,
                                  tolerance=self.subgroup_tolerance)
        if rej is not None:
            return _rejected(rej, before, norm=norm, meta=meta, after=after, clip=clip)
        return Decision(True, ACCEPTED, "accepted", before.score, after.score, new_state, norm,
                        dict(before.per_group), dict(after.per_group), clip, meta)


@dataclasses.dataclass(frozen=True, kw_only=True)
class AcceptAllPolicy:
    """Baseline without defences: every well-formed update is applied (``server_lr``-scaled) and accepted.

    Malformed or unreadable updates are still rejected (codes 1 / 5): they cannot be applied.
    Useful to show in the demo what the default policy's checks prevent.
    """

    name: ClassVar[str] = "accept-all"
    server_lr: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.server_lr) and self.server_lr > 0):
            raise ValidationError(f"server_lr must be a finite number > 0, got {self.server_lr!r}")

    def settings(self) -> dict[str, Any]:
        """The settings as a dict (with ``policy`` = the registry name)."""
        return {"policy": self.name, **dataclasses.asdict(self)}

    def decide(self, manifest: Manifest, current_state: Mapping[str, torch.Tensor], delta: bytes | Delta,
               validation: Validation, accepted_norms: Sequence[float] = ()) -> Decision:
        """Apply and accept ``delta`` if it is well formed; scores are computed for the record."""
        X, y, groups = _unpack_validation(validation)
        before = _score(manifest, current_state, X, y, groups)
        tensors, meta, rej = _parse_delta(manifest, delta)
        if rej is not None or tensors is None:
            return _rejected(rej, before, norm=math.nan, meta=meta)  # type: ignore[arg-type]
        new_state = apply_update(current_state, tensors, scale=self.server_lr)
        after = _score(manifest, new_state, X, y, groups)
        return Decision(True, ACCEPTED, "accepted", before.score, after.score, new_state, update_norm(tensors),
                        dict(before.per_group), dict(after.per_group), None, meta)


#: Policies by ``--policy`` name.
POLICIES: dict[str, type] = {DefaultPolicy.name: DefaultPolicy, AcceptAllPolicy.name: AcceptAllPolicy}


def make_policy(name: str, **settings: Any) -> Policy:
    """Instantiate a registered policy by name with keyword settings; ``ValidationError`` if unknown."""
    try:
        cls = POLICIES[name]
    except KeyError:
        raise ValidationError(f"unknown policy {name!r}; choose one of {', '.join(sorted(POLICIES))}") from None
    try:
        return cls(**settings)
    except TypeError as exc:
        fields = [f.name for f in dataclasses.fields(cls)]
        raise ValidationError(f"bad settings for policy {name!r} ({exc}); allowed: {fields}") from None

