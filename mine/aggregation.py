"""The arithmetic of a round, as pure functions: which updates are norm outliers
(:func:`round_outliers`), clipping (:func:`clip_scales`) and the mean (:func:`aggregate`), each
update's direction (:func:`alignments`, :func:`noise_alignment`) and similarity to the others
(:func:`pairwise_similarity`, :func:`similarity_outliers`), its harm applied alone against the round's
own noise level (:func:`standalone_harm`, :func:`harm_zscores`, :func:`stouffer`), its leave-one-out
value (:func:`loo_contributions`), and the round's pot split into basis points
(:func:`shares_bps`); and the validation losses the rules read (:func:`validation_loss`,
:func:`class_losses`, :func:`class_sign_threshold`). :class:`mine.round_policy.RoundPolicy` applies them.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from mine.checks import MAD_TO_SIGMA, MIN_RELATIVE_SPREAD, robust_limit
from mine.errors import ValidationError
from mine.evaluate import EvalResult, evaluate
from mine.model import Manifest, build_model, prepare_targets

__all__ = [
    "BPS",
    "CLASS_SIGN_ALPHA",
    "HARM_Z_CAP",
    "MIN_HARM_SAMPLES",
    "aggregate",
    "alignments",
    "beyond_level",
    "class_losses",
    "class_sign_threshold",
    "clip_scales",
    "evaluate_state",
    "harm_level",
    "harm_zscores",
    "loo_contributions",
    "noise_alignment",
    "pairwise_similarity",
    "precision_weights",
    "round_outliers",
    "shares_bps",
    "similarity_outliers",
    "standalone_harm",
    "stouffer",
    "validation_loss",
]

#: Fewest updates in a round for :func:`standalone_harm` to estimate the round's noise level.
MIN_HARM_SAMPLES = 5
#: Largest magnitude of a harm z-score (:func:`harm_zscores`): finite, so the evidence stays JSON.
HARM_Z_CAP = 100.0
#: Basis points in a whole (the shares of a round's pot).
BPS = 10_000


def round_outliers(norms: Sequence[float], history: Sequence[float], *, factor: float,
                   min_history: int) -> list[bool]:
    """Which of a round's update norms are outliers (code 4).

    A norm is an outlier if it exceeds the robust limit of the *round's own* norms
    (``median + factor * max(1.4826 * MAD, 0.25 * median)``; a reference from the very first
    round), or, with at least ``min_history`` accepted norms from earlier rounds, the limit with
    ``2 * factor`` over that history. Non-finite norms are always outliers; small norms never are.
    """
    if not (factor > 0 and math.isfinite(factor)):
        raise ValidationError(f"factor must be a finite number > 0, got {factor!r}")
    finite = [float(n) for n in norms if math.isfinite(n) and n >= 0]
    limits: list[float] = []
    if finite:
        limits.append(robust_limit(finite, factor)[0])
    hist = [float(x) for x in history if math.isfinite(x)]
    if len(hist) >= max(int(min_history), 1):
        # looser than the round's own limit: honest norms drift between rounds (DP noise, shard
        # sizes); the history only has to stop a round made entirely of boosted updates
        limits.append(robust_limit(hist, 2 * factor)[0])
    return [not (math.isfinite(n) and n >= 0) or any(n > lim for lim in limits) for n in norms]


def clip_scales(norms: Sequence[float], bound: float | None) -> list[float]:
    """Per-update factor ``min(1, bound / norm)`` that clips each update to L2 norm ``bound``."""
    if bound is None:
        return [1.0] * len(norms)
    return [1.0 if n <= bound or n == 0 else bound / n for n in norms]


def aggregate(deltas: Sequence[Mapping[str, torch.Tensor]], weights: Sequence[float]) -> dict[str, torch.Tensor]:
    """``sum_i weights[i] * deltas[i]`` per tensor, in float64, summed in the given order.

    The round's aggregate is ``aggregate(clipped deltas, [server_lr / n] * n)``: a norm-bounded
    mean. Deterministic, so an auditor replays it bit for bit.
    """
    if len(deltas) != len(weights) or not deltas:
        raise ValidationError("aggregate needs one weight per delta and at least one delta")
    out: dict[str, torch.Tensor] = {}
    for k in sorted(deltas[0]):
        acc = torch.zeros(deltas[0][k].shape, dtype=torch.float64)
        for d, w in zip(deltas, weights):
            acc += float(w) * d[k].detach().to(torch.float64)
        out[k] = acc
    return out


def alignments(deltas: Sequence[Mapping[str, torch.Tensor]], scales: Sequence[float]) -> list[float]:
    """Cosine similarity of each (scaled) delta with the sum of the *other* scaled deltas.

    An honest update trained from the same version points roughly the same way as the rest of its
    round (> 0), even when it adds little; a poisoned one points away. 0 for a one-update round.
    """
    if len(deltas) < 2:
        return [0.0] * len(deltas)
    flat = [torch.cat([d[k].detach().to(torch.float64).ravel() for k in sorted(d)]) * float(s)
            for d, s in zip(deltas, scales)]
    total = torch.stack(flat).sum(dim=0)
    out = []
    for f in flat:
        rest = total - f
        denom = float(torch.linalg.vector_norm(f)) * float(torch.linalg.vector_norm(rest))
        out.append(float(torch.dot(f, rest)) / denom if denom > 0 else 0.0)
    return out


def loo_contributions(loss_all: float, loss_without: Sequence[float]) -> list[float]:
    """Leave-one-out marginal values: ``loss_without[i] - loss_all`` (positive = update i helps).

    ``loss_without[i]`` is the validation loss of the round's aggregate (the mean of the others)
    without update ``i`` (for a one-update round: the current model's loss).
    """
    return [float(lw) - float(loss_all) for lw in loss_without]


def noise_alignment(dim: int, *, sigmas: float = 3.0) -> float:
    """The cosine below which an update "points away" from its round: ``-sigmas / sqrt(dim)``.

    Two independent random directions in ``dim`` dimensions have a cosine of mean 0 and standard
    deviation ``1 / sqrt(dim)``; a DP update is mostly noise, so its cosine with the rest of its round
    is near 0 either side (0.01–0.14 measured on the digits MLP). Only a cosine ``sigmas`` standard
    deviations below 0 is evidence of pointing away (digits MLP, d = 2,410: -0.061).
    """
    if dim < 1:
        raise ValidationError(f"dim must be a positive integer, got {dim!r}")
    return -float(sigmas) / math.sqrt(dim)


def precision_weights(norms: Sequence[float]) -> list[float]:
    """Inverse-variance weights of DP updates, ``1 / norm_i**2`` scaled to mean 1.

    A DP update is its signal (the clipped mean gradient, about the same for every honest miner)
    plus Gaussian noise whose norm grows as 1/(its row count) and dominates the update's norm; the
    minimum-variance mean of such estimates weighs each by the inverse of its noise variance. With
    equal weights the few small, noisy shards set the noise of the round; by precision the
    large ones do. A zero or non-finite norm gets weight 0 (all such: equal weights).
    """
    inv = [1.0 / (n * n) if math.isfinite(n) and n > 0 else 0.0 for n in norms]
    total = sum(inv)
    if total <= 0:
        return [1.0] * len(norms)
    return [len(norms) * v / total for v in inv]


def standalone_harm(harms: Sequence[float], *, factor: float | Sequence[float]) -> list[bool]:
    """Which updates hurt when applied alone, beyond the round's own noise level.

    ``harms[i]`` is the change of the validation loss when update ``i`` alone (clipped, times the
    server learning rate) is applied to the current model (positive = worse). Update ``i`` is
    flagged iff ``harms[i] > 0`` and ``harms[i] > median + factor * max(1.4826 * MAD, 0.25 * |median|)``
    over the round (needs :data:`MIN_HARM_SAMPLES` updates: the median absolute deviation of fewer is
    no noise level — with four, one honest update from a skewed shard stands out). Honest
    DP updates scatter around the round's median; a label-flipping one raises the loss on its own.
    Non-finite harms are flagged. ``factor`` may be one per update (a stricter one for a miner
    already forfeited in this bounty: :class:`RoundPolicy`'s ``suspect_harm_factor``).
    """
    factors = [float(f) for f in factor] if isinstance(factor, Sequence) else [float(factor)] * len(harms)
    if len(factors) != len(harms):
        raise ValidationError(f"{len(factors)} factors for {len(harms)} harms")
    for f in factors:
        if not (f > 0 and math.isfinite(f)):
            raise ValidationError(f"factor must be a finite number > 0, got {f!r}")
    level = harm_level(harms)
    return [beyond_level(h, level, f) for h, f in zip(harms, factors)]


def beyond_level(harm: float, level: tuple[float, float] | None, factor: float) -> bool:
    """:func:`standalone_harm`'s test of one harm against a round's (median, spread); without a level
    only a non-finite harm is flagged."""
    if not math.isfinite(harm):
        return True
    return level is not None and harm > 0 and harm > level[0] + factor * level[1]


def harm_level(harms: Sequence[float]) -> tuple[float, float] | None:
    """The round's (median, robust spread) of standalone harms; ``None`` below :data:`MIN_HARM_SAMPLES`."""
    finite = [float(h) for h in harms if math.isfinite(h)]
    if len(finite) < MIN_HARM_SAMPLES:
        return None
    med = statistics.median(finite)
    mad = statistics.median(abs(h - med) for h in finite)
    return med, max(MAD_TO_SIGMA * mad, MIN_RELATIVE_SPREAD * abs(med))


def harm_zscores(harms: Sequence[float]) -> list[float | None]:
    """Each standalone harm in robust spreads above the round's median (:func:`standalone_harm`'s
    scale), clamped to ±:data:`HARM_Z_CAP`; ``None`` for a non-finite harm or a round too small to
    have a noise level."""
    level = harm_level(harms)
    if level is None:
        return [None] * len(harms)
    med, spread = level
    out: list[float | None] = []
    for h in harms:
        if not math.isfinite(h):
            out.append(None)
        elif spread > 0:
            out.append(max(-HARM_Z_CAP, min(HARM_Z_CAP, (float(h) - med) / spread)))
        else:
            out.append(0.0 if h == med else math.copysign(HARM_Z_CAP, float(h) - med))
    return out


def stouffer(zscores: Sequence[float]) -> float:
    """Stouffer's combined z of independent z-scores: ``sum(z) / sqrt(n)`` (0 for none)."""
    return math.fsum(zscores) / math.sqrt(len(zscores)) if zscores else 0.0




def pairwise_similarity(deltas: Sequence[Mapping[str, torch.Tensor]]) -> list[float]:
    """Each delta's largest cosine with any *other* delta of the round, after taking out the round's
    mean direction (0 for a one-update round).

    FoolsGold (Fung et al. 2018): sybils pursuing the same poisoning objective are unusually similar
    to each other, more than honest miners on different data (and far more than DP noise allows).
    """
    if len(deltas) < 2:
        return [0.0] * len(deltas)
    flat = torch.stack([torch.cat([d[k].detach().to(torch.float64).ravel() for k in sorted(d)]) for d in deltas])
    unit = flat / torch.linalg.vector_norm(flat, dim=1).clamp_min(1e-300)[:, None]
    # what the round has in common (the shared learning signal) is no evidence of collusion: compare
    # what is left of each update once the round's mean direction is taken out
    resid = unit - unit.mean(dim=0, keepdim=True)
    resid = resid / torch.linalg.vector_norm(resid, dim=1).clamp_min(1e-300)[:, None]
    cos = resid @ resid.T
    cos.fill_diagonal_(-math.inf)
    return [float(v) for v in cos.max(dim=1).values]


def similarity_outliers(similarities: Sequence[float], *, factor: float, min_similarity: float) -> list[bool]:
    """Updates far more similar to another one than the round's norm (colluding sybils, FoolsGold).

    Flag ``i`` iff ``similarities[i] >= min_similarity`` and ``similarities[i] > median +
    factor * max(1.4826 * MAD, 0.05)`` over the round. Needs three updates.
    """
    if len(similarities) < 3:
        return [False] * len(similarities)
    sims = [float(x) for x in similarities]
    med = statistics.median(sims)
    mad = statistics.median(abs(x - med) for x in sims)
    limit = med + factor * max(MAD_TO_SIGMA * mad, 0.05)
    return [x >= min_similarity and x > limit for x in sims]


def shares_bps(contributions: Sequence[float], *, floor: float) -> list[int]:
    """Basis-point shares of a round's pot, summing to exactly 10000 (empty input: empty list).

    ``share_i = floor / m + (1 - floor) * c_i / sum(c)`` over the positive parts of the
    contributions, where the floor goes to the ``m`` updates whose contribution is not negative:
    redundant honest updates — each of which adds little alone — still get the floor, but one
    whose removal would *improve* the round's model gets nothing beyond the minimum (a label
    flipper kept in a DP round's mean is not paid for being there). Equal split if no contribution
    is positive. Rounded by largest remainder (ties to the lower position); every update gets at
    least 1 bp.
    """
    n = len(contributions)
    if n == 0:
        return []
    if not 0.0 <= floor <= 1.0:
        raise ValidationError(f"floor must be between 0 and 1, got {floor!r}")
    if n > BPS:
        raise ValidationError(f"cannot split {BPS} bps among {n} updates")
    pos = [max(float(c), 0.0) if math.isfinite(c) else 0.0 for c in contributions]
    eligible = [math.isfinite(c) and c >= 0 for c in contributions]
    total, m = sum(pos), sum(eligible)
    if total > 0:
        raw = [floor * e / m + (1.0 - floor) * p / total for p, e in zip(pos, eligible)]
    else:
        raw = [1.0 / n] * n
    exact = [r * BPS for r in raw]
    base = [int(math.floor(e)) for e in exact]
    left = BPS - sum(base)
    order = sorted(range(n), key=lambda i: (-(exact[i] - base[i]), i))
    for i in order[:left]:
        base[i] += 1
    for i in range(n):  # every accepted update gets at least 1 bp, taken from the largest share
        if base[i] == 0:
            top = max(range(n), key=lambda j: (base[j], -j))
            base[top] -= 1
            base[i] = 1
    return base


def evaluate_state(manifest: Manifest, state: Mapping[str, torch.Tensor], X: Any, y: Any, groups: Any, *,
                   class_f1: bool = True) -> EvalResult:
    model = build_model(manifest, seed=0)
    model.load_state_dict(dict(state), strict=True)
    return evaluate(model, X, y, manifest, groups=groups, class_f1=class_f1)


def validation_loss(manifest: Manifest, state: Mapping[str, torch.Tensor], X: Any, y: Any) -> float:
    """The manifest's loss (cross-entropy or MSE) of ``state`` on the validation set, deterministic, float64."""
    from mine.evaluate import predict

    model = build_model(manifest, seed=0)
    model.load_state_dict(dict(state), strict=True)
    out = predict(model, X, manifest).to(torch.float64)
    yt = prepare_targets(manifest, y)
    if manifest.task == "classification":
        return float(torch.nn.functional.cross_entropy(out, yt.long()))
    return float(torch.mean(torch.square(out[:, 0] - yt.to(torch.float64))))


def class_losses(manifest: Manifest, state: Mapping[str, torch.Tensor], X: Any, y: Any) -> dict[int, float]:
    """The mean cross-entropy of ``state`` on each validation class (empty for regression), float64:
    :class:`RoundPolicy`'s class-wide harm compares an update applied alone with the current model
    class by class (a label flip raises every class's loss, an honest skewed shard lowers its own's)."""
    if manifest.task != "classification":
        return {}
    from mine.evaluate import predict

    model = build_model(manifest, seed=0)
    model.load_state_dict(dict(state), strict=True)
    yt = prepare_targets(manifest, y).long()
    rows = torch.nn.functional.cross_entropy(predict(model, X, manifest).to(torch.float64), yt, reduction="none")
    return {int(c): float(rows[yt == c].mean()) for c in torch.unique(yt).tolist()}


#: One-sided level of the sign test of :meth:`RoundPolicy`'s class-wide harm rule.
CLASS_SIGN_ALPHA = 0.1


def class_sign_threshold(classes: int) -> int:
    """The fewest of ``classes`` classes an update must hurt for ``P(X >= k) <= CLASS_SIGN_ALPHA`` under
    X ~ Binomial(classes, 1/2) (8 of 10, 4 of 4; more than ``classes`` when no count is that unlikely)."""
    tail = 0.0
    for k in range(classes, -1, -1):
        tail += math.comb(classes, k) / 2 ** classes
        if tail > CLASS_SIGN_ALPHA:
            return k + 1
    return 0
