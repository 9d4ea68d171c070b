"""The rules one update must pass, as pure functions: each returns ``None`` (pass) or a
:class:`Rejection` carrying the reason code the contract records (:mod:`mine.reasons`).

:func:`check_structure` (1), :func:`check_improvement` (2), :func:`check_subgroups` (3),
:func:`check_outlier` and :func:`norm_bound` (4), :func:`check_origin` (6) and :func:`check_epsilon` (7);
:func:`parse_delta` reads an update's bytes (5 when they do not open). :mod:`mine.policy` and
:mod:`mine.round_policy` apply them.

Score comparisons are done on the on-chain fixed-point values (:func:`mine.evaluate.score_to_chain`,
6 decimals), so a decision is exactly reproducible from the scores an auditor recomputes.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from mine.errors import ValidationError
from mine.evaluate import score_to_chain
from mine.model import Manifest, UnreadableError, parameter_shapes, read_update
from mine.reasons import (EPSILON_TOO_HIGH, NO_IMPROVEMENT, NOT_SUBMITTERS, OUTLIER_NORM, STRUCTURE,
                          SUBGROUP_REGRESSION, UNREADABLE)

__all__ = [
    "Delta",
    "MAD_TO_SIGMA",
    "MIN_RELATIVE_SPREAD",
    "Rejection",
    "Validation",
    "check_epsilon",
    "check_improvement",
    "check_origin",
    "check_outlier",
    "check_settings",
    "check_structure",
    "check_subgroups",
    "norm_bound",
    "parse_delta",
    "robust_limit",
    "unpack_validation",
    "update_epsilon",
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
Validation = tuple[Any, ...]  # (X, y) or (X, y, groups)


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
                    tolerance: float, relative: bool | None = None) -> Rejection | None:
    """Code 3 if any subgroup's score gets worse by more than ``tolerance`` (fixed-point compared).

    A worsening of exactly ``tolerance`` passes. A subgroup missing from ``after`` fails. With
    ``relative`` (the default for error metrics such as MSE, i.e. when ``higher_is_better`` is
    false: their scale is the target's) the allowed worsening of a group is
    ``tolerance * |its score before|``; accuracies compare absolutely. Subgroups are classes by default, or
    the owner's group column (``mine vault add ... --group COLUMN``; keys like ``"site=2"``).
    """
    if not (tolerance >= 0 and math.isfinite(tolerance)):
        raise ValidationError(f"tolerance must be a finite number >= 0, got {tolerance!r}")
    if relative is None:
        relative = not higher_is_better
    allowed_abs = score_to_chain(tolerance)
    worst: tuple[int, str] | None = None
    for key in sorted(before):
        if key not in after:
            return Rejection(SUBGROUP_REGRESSION, f"subgroup {key!r} has no score after the update")
        b, a = before[key], after[key]
        if not (math.isfinite(b) and math.isfinite(a)):
            return Rejection(SUBGROUP_REGRESSION, f"subgroup {key!r} score is not finite ({b!r} -> {a!r})")
        loss = -_gain(b, a, higher_is_better)
        allowed = score_to_chain(tolerance * abs(b)) if relative else allowed_abs
        if loss > allowed and (worst is None or loss > worst[0]):
            worst = (loss, key)
    if worst is None:
        return None
    key = worst[1]
    limit = f"{tolerance:.6f} x {abs(before[key]):.6f}" if relative else f"{tolerance:.6f}"
    return Rejection(SUBGROUP_REGRESSION,
                     f"subgroup {key!r} got worse: {before[key]:.6f} -> {after[key]:.6f} "
                     f"(by {worst[0] / 1e6:.6f}, tolerance {limit})")


def _record_epsilon(record: Any) -> float:
    """The larger of a :class:`mine.dp.DPRecord`'s stated ε and what its stated mechanism gives."""
    from mine.dp import epsilon_for

    return max(record.epsilon, epsilon_for(record.noise_multiplier, record.sample_rate, record.steps, record.delta))


def update_epsilon(dp_metadata: str | None) -> float:
    """An update's ε: the larger of what it states and what its stated mechanism gives (inf if not DP)."""
    from mine.dp import parse_dp_metadata

    try:
        record = parse_dp_metadata(dp_metadata)
    except ValidationError:
        return math.inf
    return math.inf if record is None else _record_epsilon(record)


def check_epsilon(dp_metadata: str | None, *, max_epsilon: float | None, max_delta: float = 1e-5) -> Rejection | None:
    """Code 7 if the update's privacy is weaker than the bounty allows (``None``: no maximum, pass).

    ``dp_metadata`` is the update's ``dp`` metadata string (``"off"`` or the JSON of
    :class:`mine.dp.DPRecord`). The stated ε is not trusted: ε is recomputed with Opacus' RDP
    accountant from the stated mechanism (noise multiplier, sample rate, steps, δ), and the larger
    of the two counts. Rejected: no ``dp`` metadata or ``"off"``, malformed settings, δ above
    ``max_delta``, or ε above ``max_epsilon``. (That the noise was really added cannot be checked
    from the update; the ε is the miner's claim about its own mechanism.)
    """
    if max_epsilon is None:
        return None
    from mine.dp import parse_dp_metadata

    try:
        record = parse_dp_metadata(dp_metadata)
    except ValidationError as exc:
        return Rejection(EPSILON_TOO_HIGH, f"{exc}; this bounty accepts only DP updates with epsilon <= {max_epsilon:g}")
    if record is None:
        return Rejection(EPSILON_TOO_HIGH, f"the update was trained without DP (--no-dp); this bounty accepts only "
                                            f"epsilon <= {max_epsilon:g}")
    if record.delta > max_delta:
        return Rejection(EPSILON_TOO_HIGH, f"the update's delta {record.delta:g} is above the allowed {max_delta:g}")
    eps = _record_epsilon(record)
    if eps > max_epsilon * (1 + 1e-9):
        return Rejection(EPSILON_TOO_HIGH, f"the update's epsilon {eps:.4g} (recomputed from its noise "
                                            f"{record.noise_multiplier:g}, sample rate {record.sample_rate:g}, "
                                            f"{record.steps} steps) is above the bounty's maximum {max_epsilon:g}")
    return None


def robust_limit(accepted_norms: Sequence[float], factor: float) -> tuple[float, float, float]:
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
    limit, med, sigma = robust_limit(hist, factor)
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


def check_origin(meta: Mapping[str, str], *, submitter: str, bounty_id: int, base_version: int) -> Rejection | None:
    """Code 6 unless the update names the on-chain submitter, this bounty and the declared base version.

    The miner and bounty travel *inside* the (sealed) update, so a CID copied from someone else's
    submission names the wrong miner.
    """
    inner = str(meta.get("miner", ""))
    if inner.lower() != submitter.lower():
        return Rejection(NOT_SUBMITTERS, f"the update names miner {inner or '(none)'}, but {submitter} submitted it")
    if str(meta.get("bounty", "")) != str(bounty_id):
        return Rejection(NOT_SUBMITTERS, f"the update is for bounty {meta.get('bounty')!r}, not {bounty_id}")
    if str(meta.get("base_version", "")) != str(base_version):
        return Rejection(NOT_SUBMITTERS, f"the update says base version {meta.get('base_version')!r}; "
                                         f"the submission declared {base_version}")
    return None


def unpack_validation(validation: Validation) -> tuple[Any, Any, Any]:
    if not isinstance(validation, (tuple, list)) or len(validation) not in (2, 3):
        raise ValidationError("validation must be a tuple (X, y) or (X, y, groups)")
    X, y = validation[0], validation[1]
    groups = validation[2] if len(validation) == 3 else None
    return X, y, groups


def parse_delta(manifest: Manifest, delta: bytes | Delta) -> tuple[dict[str, torch.Tensor] | None,
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


def check_settings(policy: Any, *, non_negative: Sequence[str] = (), positive: Sequence[str] = (),
                   positive_int: Sequence[str] = ()) -> None:
    """``ValidationError`` naming the first of a policy's settings that is out of its range."""
    for field in non_negative:
        v = getattr(policy, field)
        if not (math.isfinite(v) and v >= 0):
            raise ValidationError(f"{field} must be a finite number >= 0, got {v!r}")
    for field in positive:
        v = getattr(policy, field)
        if not (math.isfinite(v) and v > 0):
            raise ValidationError(f"{field} must be a finite number > 0, got {v!r}")
    for field in positive_int:
        v = getattr(policy, field)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValidationError(f"{field} must be a positive integer, got {v!r}")
