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
4     :func:`check_outlier`     the update norm is an outlier among accepted updates / the round
                               (refunded when the excess is the DP noise the update declares:
                               a small shard, :func:`noise_explains_norm`, unless, clipped and
                               applied alone, it hurts far beyond the round's noise: then 8)
5     (client)                 unreadable: decryption / CID / parse failure
6     :func:`check_origin`      not the submitter's update (inner miner or bounty differ)
7     :func:`check_epsilon`     the update's DP ε (recomputed) is above the bounty's maximum, or no DP
8     :class:`RoundPolicy`      harmful: hurts alone beyond the round's noise (:func:`standalone_harm`),
                               or hurts alone nearly every class beyond a lower factor
                               (:func:`class_losses`, :func:`class_sign_threshold`),
                               or a little every round (Stouffer over the miner's updates in the
                               bounty, :func:`stouffer`), colludes (:func:`similarity_outliers`, off by
                               default), or has a negative leave-one-out value while pointing away
                               (:func:`noise_alignment`)
9     :class:`RoundPolicy`      concentrated: a DP update puts far more of its first-layer energy on one
                               input than clean validation data of any class does, beyond its noise
                               (:func:`concentration_pvalues`; backdoor triggers do), alone or pooled
                               with the miner's earlier updates in the bounty (:func:`fisher_combined`),
                               or on an input another miner's code-9 forfeit named
====  =====================  ==============================================================

The rules are pure functions in :mod:`mine.checks` (one update) and :mod:`mine.aggregation` (a round's
arithmetic); :class:`~mine.round_policy.RoundPolicy` (the owner's policy since Sonar v2, in
:mod:`mine.round_policy`) judges a round of updates trained from the same version together.

:class:`DefaultPolicy` applies an update to the *current* model (whatever version it was trained
from), scaled by a server learning rate and clipped to a norm bound derived from the norms of
previously accepted updates (norm bounding is the standard defence against backdoors hidden in
otherwise useful updates), and accepts it only if every rule passes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch

from mine.aggregation import (  # noqa: F401 - re-exported
    BPS, CLASS_SIGN_ALPHA, HARM_Z_CAP, MIN_HARM_SAMPLES, aggregate, alignments, class_losses, class_sign_threshold,
    clip_scales, evaluate_state, harm_zscores, loo_contributions, noise_alignment, pairwise_similarity,
    precision_weights, round_outliers, shares_bps, similarity_outliers, standalone_harm, stouffer, validation_loss)
from mine.checks import (  # noqa: F401 - re-exported
    MAD_TO_SIGMA, MIN_RELATIVE_SPREAD, Delta, Rejection, Validation, check_epsilon, check_improvement, check_origin,
    check_outlier, check_settings, check_structure, check_subgroups, norm_bound, parse_delta, unpack_validation,
    update_epsilon)
from mine.concentration import (  # noqa: F401 - re-exported
    MIN_PVALUE, NOISE_MARGIN, NOISE_SIGNAL_SLACK, clean_input_bounds, clean_input_shares, concentrated,
    concentration_pvalues, declared_noise_std, fisher_combined, fisher_terms, group_matrix, input_groups,
    noise_explains_norm, noise_variance, signal_shares)
from mine.errors import ValidationError
from mine.evaluate import EvalResult, score_to_chain
from mine.model import Manifest, apply_update, update_norm
from mine.reasons import (ACCEPTED, CONCENTRATED, EPSILON_TOO_HIGH, NEGATIVE_CONTRIBUTION,  # noqa: F401 - re-exported
                          NO_IMPROVEMENT, NOT_SUBMITTERS, OUTLIER_NORM, REASONS, REFUNDED_CODES, STRUCTURE,
                          SUBGROUP_REGRESSION, UNREADABLE)
from mine.round_policy import (  # noqa: F401 - re-exported
    SUM_MAX_ENTRIES, WARNED_CODES, ItemVerdict, MinerEvidence, RoundDecision, RoundItem, RoundPolicy,
    evidence_from_json, evidence_to_json)

__all__ = [
    "ACCEPTED",
    "AcceptAllPolicy",
    "Decision",
    "DefaultPolicy",
    "POLICIES",
    "Policy",
    "REASONS",
    "Rejection",
    "RoundPolicy",
    "check_epsilon",
    "update_epsilon",
    "check_improvement",
    "check_outlier",
    "check_structure",
    "check_subgroups",
    "clean_input_bounds",
    "clean_input_shares",
    "concentrated",
    "concentration_pvalues",
    "declared_noise_std",
    "noise_explains_norm",
    "group_matrix",
    "input_groups",
    "make_policy",
    "noise_alignment",
    "noise_variance",
    "norm_bound",
    "pairwise_similarity",
    "precision_weights",
    "signal_shares",
    "similarity_outliers",
    "standalone_harm",
    "MinerEvidence",
    "fisher_combined",
    "fisher_terms",
    "harm_zscores",
    "stouffer",
    "evidence_from_json",
    "evidence_to_json",
]


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


def _rejected(rej: Rejection, before: EvalResult, *, norm: float, meta: dict[str, str],
              after: EvalResult | None = None, clip: float | None = None) -> Decision:
    return Decision(False, rej.code, rej.reason, before.score, after.score if after else math.nan, None, norm,
                    dict(before.per_group), dict(after.per_group) if after else {}, clip, meta)


@dataclasses.dataclass(frozen=True, kw_only=True)
class DefaultPolicy:
    """Structure, outlier-norm, improvement and subgroup checks, with a clipped, scaled update.

    Settings (keyword-only):

    * ``min_improvement`` — margin the overall score must improve by (0 = any strict gain);
    * ``subgroup_tolerance`` — largest allowed worsening of any subgroup score (classes, or the owner's
      group column); for an error metric (MSE) a fraction of the group's score before;
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
        check_settings(self, non_negative=("min_improvement", "subgroup_tolerance"),
                       positive=("outlier_factor", "server_lr", "clip_norm_factor"),
                       positive_int=("min_history", "history_window"))

    def settings(self) -> dict[str, Any]:
        """The settings as a dict (with ``policy`` = the registry name)."""
        return {"policy": self.name, **dataclasses.asdict(self)}

    def decide(self, manifest: Manifest, current_state: Mapping[str, torch.Tensor], delta: bytes | Delta,
               validation: Validation, accepted_norms: Sequence[float] = ()) -> Decision:
        """Judge ``delta`` (update bytes or parsed tensors) against ``current_state``.

        Order: structure (1/5) → outlier norm (4) → apply ``server_lr``-scaled delta clipped to
        ``median(recent accepted norms) * clip_norm_factor`` → improvement (2) → subgroups (3).
        """
        X, y, groups = unpack_validation(validation)
        before = evaluate_state(manifest, current_state, X, y, groups)
        tensors, meta, rej = parse_delta(manifest, delta)
        if rej is not None or tensors is None:
            return _rejected(rej, before, norm=math.nan, meta=meta)  # type: ignore[arg-type]
        norm = update_norm(tensors)
        history = [float(v) for v in accepted_norms][-self.history_window:]
        rej = check_outlier(norm, history, factor=self.outlier_factor, min_history=self.min_history)
        if rej is not None:
            return _rejected(rej, before, norm=norm, meta=meta)
        clip = norm_bound(history, factor=self.clip_norm_factor, min_history=self.min_history)
        new_state = apply_update(current_state, tensors, scale=self.server_lr, max_norm=clip)
        after = evaluate_state(manifest, new_state, X, y, groups)
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
        X, y, groups = unpack_validation(validation)
        before = evaluate_state(manifest, current_state, X, y, groups)
        tensors, meta, rej = parse_delta(manifest, delta)
        if rej is not None or tensors is None:
            return _rejected(rej, before, norm=math.nan, meta=meta)  # type: ignore[arg-type]
        new_state = apply_update(current_state, tensors, scale=self.server_lr)
        after = evaluate_state(manifest, new_state, X, y, groups)
        return Decision(True, ACCEPTED, "accepted", before.score, after.score, new_state, update_norm(tensors),
                        dict(before.per_group), dict(after.per_group), None, meta)


#: Policies by ``--policy`` name.
POLICIES: dict[str, type] = {DefaultPolicy.name: DefaultPolicy, AcceptAllPolicy.name: AcceptAllPolicy,
                             RoundPolicy.name: RoundPolicy}


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
