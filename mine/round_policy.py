"""The owner's policy since Sonar v2: judge a round of updates together.

:class:`RoundPolicy` (the owner's policy since Sonar v2) judges a *round*: every update trained
from the same version is checked alone (1, 5, 6, 7), then against the round's own median norm and
the history (4), then, per input of the first layer, against what clean validation data uses (9),
clipped; an update that raises the validation loss when applied alone, beyond the
round's own noise level, is forfeited (8); the rest are aggregated (mean of clipped deltas times
``server_lr``) and each one's marginal value is measured by leaving it out — under DP every update
that does not point away stays in the mean (8); the aggregate must not hurt a subgroup (3) and
must improve the score (2). Shares of the round's pot follow the positive contributions with a
floor (:func:`shares_bps`). The arithmetic is pure functions (:func:`round_outliers`,
:func:`aggregate`, :func:`standalone_harm`, :func:`noise_alignment`, :func:`pairwise_similarity`,
:func:`loo_contributions`, :func:`shares_bps`, :func:`noise_variance`, :func:`concentration_pvalues`).

Why code 9: a backdoor (a trigger stamped on some rows, relabelled) is invisible on the owner's clean
validation set to every rule above — its norm, direction, harm and leave-one-out value look honest
under DP noise — but to learn the trigger the update must move the weights of the trigger's inputs
far more than clean data ever does. Per input unit ``g`` of the first layer (a Linear column, a
convolution's input channel, an embedding row) the update's energy ``E_g`` is its signal plus DP
noise of a variance ``v`` estimated from the update itself (:func:`noise_variance`); clean data of
any one validation class (or owner's group) gives input ``g`` at most a share ``a_g`` of its
gradient energy (:func:`clean_input_shares`). Under "at most ``a_g`` of this update's signal ``S``",
``E_g / v`` is noncentral chi-square, and an update whose p-value is below
``concentration_alpha / #inputs`` (Bonferroni, default 5e-3) is forfeited. The threshold is on the
noise, not tuned to a trigger; updates without DP (no noise level) and first layers with fewer than
4 inputs or 8 weights per input (a linear model) are not tested; a one-channel CNN is tested at its
Linear head (:func:`input_groups`). What a backdoor's earlier accepted updates put on the inputs a
code-9 forfeit names is taken back out of the next version (:attr:`RoundPolicy.retract_convicted`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import statistics
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from typing import Any, ClassVar

import torch

from mine.aggregation import (MIN_HARM_SAMPLES, aggregate, alignments, beyond_level, class_losses,
                              class_sign_threshold, clip_scales, evaluate_state, harm_level, harm_zscores,
                              loo_contributions, noise_alignment, pairwise_similarity, precision_weights,
                              round_outliers, shares_bps, similarity_outliers, standalone_harm, stouffer,
                              validation_loss)
from mine.checks import (Rejection, Validation, check_epsilon, check_improvement, check_origin, check_settings,
                         check_subgroups, parse_delta, robust_limit, unpack_validation, update_epsilon)
from mine.concentration import (MIN_GROUPS, InputUnits, clean_input_bounds, concentrated, concentration_pvalues,
                                declared_noise_std, fisher_combined, fisher_terms, group_matrix, input_groups,
                                mechanism_norm_bound, noise_explains_norm, signal_shares)
from mine.errors import ValidationError
from mine.evaluate import EvalResult, score_to_chain
from mine.model import Manifest, apply_update, update_norm
from mine.reasons import (ACCEPTED, CONCENTRATED, NEGATIVE_CONTRIBUTION, NO_IMPROVEMENT, OUTLIER_NORM, REASONS,
                          REFUNDED_CODES, SUBGROUP_REGRESSION, UNREADABLE)

__all__ = [
    "ItemVerdict",
    "MinerEvidence",
    "RoundDecision",
    "RoundItem",
    "RoundPolicy",
    "SUM_MAX_ENTRIES",
    "WARNED_CODES",
    "evidence_from_json",
    "evidence_to_json",
]

#: Most first-layer weights whose sum over a miner's updates is kept (:attr:`MinerEvidence.concentration_sum`,
#: in the owner's bounty file, about 20 bytes each): a larger first layer is tested per update and by
#: Fisher's method only.
SUM_MAX_ENTRIES = 1 << 16


@dataclasses.dataclass(frozen=True)
class MinerEvidence:
    """What a miner's earlier updates in one bounty showed, pooled (the owner keeps it; an audit
    rebuilds it by replaying the rounds in order, so a verdict that used it replays the same).

    * ``concentration_tests`` / ``concentration_terms``: how many of its updates were tested for
      concentration (code 9), and per first-layer input the sum of their :func:`fisher_terms`;
    * ``harm_z``: the standalone-harm z-scores (:func:`harm_zscores`) of its updates that were not
      forfeited (a forfeit is judged once; the pool is what the miner got away with);
    * ``concentration_sum``: the sum of its tested updates' first-layer weights grouped by input
      unit (:func:`group_matrix`, flattened row by row; ``()`` before the first test);
    * ``flagged_inputs``: the input units its code-9 forfeits named (a trigger's place), which the
      other miners' later updates are tested on (:attr:`RoundPolicy.guided_concentration`);
    * ``accepted`` / ``warnings``: how many of its updates were accepted, and how many of its
      would-be forfeits were turned into a warning (:attr:`RoundPolicy.good_standing_warning`);
    * ``applied_sum``: the sum of its accepted updates' first-layer weights as they went into the
      model (each one's weight in its round's mean, clipping and step included), grouped by input unit
      like ``concentration_sum``; the rows of its ``flagged_inputs`` are zeroed once a version has
      taken them back out (:attr:`RoundPolicy.retract_convicted`). ``()`` before the first accepted
      update, or when the first layer is not tested or too large to keep.
    """

    concentration_tests: int = 0
    concentration_terms: tuple[float, ...] = ()
    harm_z: tuple[float, ...] = ()
    concentration_sum: tuple[float, ...] = ()
    flagged_inputs: tuple[int, ...] = ()
    accepted: int = 0
    warnings: int = 0
    applied_sum: tuple[float, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"concentration_tests": self.concentration_tests,
                "concentration_terms": list(self.concentration_terms), "harm_z": list(self.harm_z),
                "concentration_sum": list(self.concentration_sum), "flagged_inputs": list(self.flagged_inputs),
                "accepted": self.accepted, "warnings": self.warnings, "applied_sum": list(self.applied_sum)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MinerEvidence:
        try:
            return cls(int(data.get("concentration_tests", 0)),
                       tuple(float(v) for v in data.get("concentration_terms", ())),
                       tuple(float(v) for v in data.get("harm_z", ())),
                       tuple(float(v) for v in data.get("concentration_sum", ())),
                       tuple(int(v) for v in data.get("flagged_inputs", ())),
                       int(data.get("accepted", 0)), int(data.get("warnings", 0)),
                       tuple(float(v) for v in data.get("applied_sum", ())))
        except (TypeError, ValueError, AttributeError) as exc:
            raise ValidationError(f"unreadable miner evidence {data!r}: {exc}") from None


def evidence_to_json(evidence: Mapping[str, MinerEvidence]) -> dict[str, dict[str, Any]]:
    """A bounty's evidence map as JSON (miner address → :meth:`MinerEvidence.to_json`)."""
    return {m: e.to_json() for m, e in sorted(evidence.items())}


def evidence_from_json(data: Mapping[str, Any] | None) -> dict[str, MinerEvidence]:
    """The inverse of :func:`evidence_to_json` (addresses lower-cased)."""
    return {str(m).lower(): MinerEvidence.from_json(e) for m, e in (data or {}).items()}


@dataclasses.dataclass(frozen=True)
class RoundItem:
    """One submission of a round, as the owner has it: decrypted update bytes, or why not."""

    index: int
    submitter: str
    base_version: int
    update: bytes | None
    problem: str = ""


@dataclasses.dataclass(frozen=True)
class ItemVerdict:
    """A submission's verdict: ``share_bps > 0`` accepted; else ``reason_code`` and ``refund``."""

    index: int
    miner: str
    share_bps: int
    reason_code: int
    reason: str
    refund: bool
    norm: float = math.nan
    contribution: float = math.nan
    alignment: float = math.nan
    harm: float = math.nan  # validation loss change of the update applied alone (positive = worse)
    similarity: float = math.nan  # largest cosine with another update of the round (FoolsGold's signal)
    clawback: bool = False  # forfeited, and the miner's vesting rewards in the bounty are burned

    @property
    def accepted(self) -> bool:
        return self.share_bps > 0


@dataclasses.dataclass(frozen=True)
class RoundDecision:
    """The outcome of :meth:`RoundPolicy.judge`; ``new_state`` only if some update was accepted."""

    verdicts: list[ItemVerdict]
    score_before: float
    score_after: float
    new_state: dict[str, torch.Tensor] | None
    loss_before: float
    loss_after: float
    per_group_before: dict[str, float] = dataclasses.field(default_factory=dict)
    per_group_after: dict[str, float] = dataclasses.field(default_factory=dict)
    #: every miner's pooled evidence after this round (the judge's ``evidence`` plus this round's)
    evidence: dict[str, MinerEvidence] = dataclasses.field(default_factory=dict)
    #: the miners whose earlier accepted updates ``new_state`` takes back out on the inputs their code-9
    #: forfeits named (:attr:`RoundPolicy.retract_convicted`)
    retracted: tuple[str, ...] = ()

    @property
    def accepted(self) -> list[ItemVerdict]:
        return [v for v in self.verdicts if v.accepted]

    @property
    def chain_score(self) -> int:
        """The score reported on chain: the new version's if accepted, else the current one's."""
        return score_to_chain(self.score_after if self.new_state is not None else self.score_before)


#: The forfeits :attr:`RoundPolicy.good_standing_warning` may turn into a warning: judgements of an
#: update's usefulness (harm, pointing away, collusion, a subgroup), which an honest skewed shard
#: can draw by bad luck; not a norm outlier, a wrong origin, ε or a concentration (code 9).
WARNED_CODES = frozenset({NEGATIVE_CONTRIBUTION, SUBGROUP_REGRESSION})
#: Why a norm outlier whose excess is the DP noise it declares gets its stake back.
_NOISY_REFUND = "; the excess is the DP noise it declares (a small shard): stake returned"


@dataclasses.dataclass(frozen=True, kw_only=True)
class RoundPolicy:
    """Judge a round of updates together (see the module docstring for the order of the rules).

    Settings (keyword-only):

    * ``server_lr`` — the aggregate is ``server_lr`` times the mean of the clipped deltas;
    * ``outlier_factor``, ``min_history``, ``history_window`` — norm outliers (code 4) against the
      round's median and the recent accepted norms;
    * ``clip_norm_factor`` — each delta is clipped to ``median(round norms) * factor``;
    * ``harm_factor`` — an update that raises the validation loss when applied alone, beyond the
      round's noise level (:func:`standalone_harm`), is rejected and forfeited (code 8; label flips
      do); ``None`` turns the check off; ``suspect_harm_factor`` (``None``: the same) is the factor
      for a miner whose earlier update in this bounty was forfeited (the judge's ``suspects``, read
      from the chain: an auditor replays them) — a repeat offender gets less benefit of the doubt;
    * ``collusion_factor``, ``min_similarity`` — updates unusually similar to another of the round
      (:func:`similarity_outliers`, FoolsGold) are rejected and forfeited (code 8); ``None``: off;
    * ``loss_tolerance``, ``min_alignment``, ``keep_aligned`` — an update whose leave-one-out
      contribution is below ``-loss_tolerance`` and whose cosine with the rest of the round is below
      ``min_alignment`` points away: rejected and forfeited (code 8). ``min_alignment`` ``None`` (the
      default) is the noise level :func:`noise_alignment` (``-3/sqrt(d)``): a DP update is mostly
      noise, its cosine with honest work is near 0. An update with a negative contribution that
      points with its round stays in the average with ``keep_aligned`` (the default: averaging k DP
      updates divides their noise by sqrt(k), so every honest one helps the mean even when it does
      not help alone; it earns the floor share), else it is rejected with its stake returned;
    * ``subgroup_tolerance`` — largest allowed worsening of any subgroup by the aggregate (code 3;
      the update whose removal helps that subgroup most goes, forfeited only if it points away);
    * ``min_improvement`` — margin the aggregate must improve the score by (code 2, refunded);
    * ``share_floor`` — fraction of the pot split equally among the accepted whose leave-one-out value
      is not negative (:func:`shares_bps`);
    * ``step_search`` — multipliers of ``server_lr`` tried for the aggregate; the best validation
      score that keeps every subgroup within tolerance wins (ties: the earlier);
    * ``max_epsilon`` — the bounty's DP cap (code 7), ``None`` for none;
    * ``concentration_alpha`` — a DP update whose energy on one first-layer input is beyond what clean
      validation data of any class puts there plus its noise, at p < ``alpha / #inputs``, is forfeited
      (code 9, :func:`concentration_pvalues`); ``None`` turns the check off;
    * ``concentration_max_epsilon`` — updates with a larger ε are not tested for concentration: with
      that little noise an honest update's drift over its steps exceeds what clean data puts on an
      input (digits, one run at ε 100: 6 honest updates forfeited; at ε 8 none of about 500). A
      bounty that wants the backdoor test caps ε (``max_epsilon``) at most at this; ``None``: no limit;
    * ``pooled_concentration`` — the concentration test is on the miner's pooled evidence: the
      p-values of all its tested updates in this bounty, per input, combined by Fisher's method
      (:func:`fisher_combined`), at the same limit; a trigger too faint in one round (a small
      shard) is not faint over several;
    * ``pooled_harm_z`` — an update that hurts alone (z > 0) is forfeited (code 8) when the Stouffer
      z of it and the miner's earlier unforfeited updates in this bounty (:func:`stouffer` of
      :func:`harm_zscores`) is above this: a label flipper that stays just under ``harm_factor``
      every round does not stay under it in sum. ``None`` (the default) turns it off: an honest
      miner with a skewed shard also hurts a little every round (digits, Dirichlet 1: a combined z
      of 4.6 after 4 rounds), so it is for markets whose miners hold similar data;
    * ``refund_declared_noise`` — a DP update that is a norm outlier only through the noise its own
      record and example bucket declare (a small shard: :func:`noise_explains_norm`) is rejected
      with its stake returned (code 4, refunded); a boosted one carries far more noise than it
      declares and is forfeited;
    * ``suspects_must_help`` — an update of a miner forfeited at least this many times earlier in
      this bounty is used only if it lowers the validation loss when applied alone; one that does
      not is rejected with its stake returned (code 8, refunded). A label flipper forfeited round
      after round cannot collect a share of later pots (which hold the forfeited stakes) by hiding
      in a converged round's noise. 2, not 1: an honest miner forfeited once by bad luck (a skewed
      shard, about 1 update in 300) keeps being paid for updates that are merely not harmful.
      ``None`` turns it off;
    * ``concentration_head`` — a model whose first layer is a convolution on fewer than 4 channels
      (a one-channel image: a shared kernel shows no trigger) is tested at the Linear layer after its
      Flatten, per output and position of the feature map (:func:`input_groups`); ``False``: such a
      model is not tested (digits CNN, backdoor, 10 miners of which 3 attack, seeds 5 and 6, 3 runs
      each: backdoor success 0.91–0.94 untested, 0.10–0.83 tested this way alone);
    * ``harm_noise_from_all`` — the round's noise level for the harm rule (the median and robust
      spread of standalone harms) is taken over every update that passed the norm check, those the
      concentration test forfeited included; ``False``: over the updates still in the round. Taking
      out the attackers first leaves fewer, more alike updates, and an honest miner with a skewed
      shard then stands out (CNN backdoor runs: 10 honest forfeits in 6 runs, 0 from all);
    * ``summed_concentration`` — the concentration test also runs on the *sum* of the miner's tested
      updates in this bounty (their first-layer units, :attr:`MinerEvidence.concentration_sum`):
      a trigger pulls the same weights the same way every round, so its signal adds up k-fold while
      independent DP noise adds up √k-fold; Fisher's method (``pooled_concentration``) pools only
      each update's evidence. With both, each is tested at half the limit, so an honest update is
      still forfeited with probability at most ``concentration_alpha``. Digits CNN, backdoor: every
      attacker's summed p (x 160 units) is below the limit by the second round (Fisher: 0.14 for
      one); the smallest honest value, over both models and 4 rounds, was 6.6 x the limit;
    * ``share_quantile`` — what clean data may put on an input is taken at this quantile over
      bootstrap resamples of each class's validation rows (:func:`clean_input_shares`): a small
      validation set under-allows inputs a large honest shard leans on (breast cancer, 143 rows:
      honest updates forfeited by the pooled tests); ``None``: the plain class means;
    * ``clawback_concentrated`` — an update forfeited by the concentration test (code 9) also takes
      back the rewards its miner has vesting in the bounty (the contract's ``clawback``): a backdoor
      pulls the same weights every round, so the update that gives it away convicts the earlier
      ones that passed alone (digits CNN, backdoor: an attacker paid in the first round, before its
      pooled evidence, kept up to 1.24 ETH). Its honest cost is the rate of code-9 forfeits under
      ``clawback_alpha`` (below); other codes (harm, norm) can befall an honest miner with a skewed
      shard once in a while and do not claw back (nor can a count of them: replica, breast cancer,
      seed 0, an honest miner was forfeited as harmful 3 times against 1 accepted, as often as a
      label flipper). ``False``: no clawback;
    * ``clawback_alpha`` — the limit one of the forfeited update's code-9 p-values must be under
      (divided like ``concentration_alpha``, per test and per input) for that clawback. A clawback
      costs a whole bounty's pay, not one stake, so it asks for stronger evidence: an honest
      tabular shard leans on a feature its class means barely use, and its summed updates can pass
      the forfeit limit (breast cancer: honest p 2 to 29 x under it, and 3.7 ETH of an honest
      miner's pay clawed back in one demo run), while a backdoor's evidence grows far beyond it as
      its rounds add up. Digits CNN, 18 attackers in 6 replica runs: 7 of the 8 paid in an early
      round were clawed back and all 18 ended negative; breast cancer, 20 runs: 0 honest
      clawbacks. ``None``: every code-9 forfeit claws back;
    * ``guided_concentration`` — once a miner's update was forfeited by code 9, the input it named
      (:attr:`MinerEvidence.flagged_inputs`) is where a shared trigger sits: every *other* miner's
      later updates are also tested on just those inputs, at the limit divided by their number
      instead of by all inputs (one more test in the split). Colluders with one trigger are the
      usual backdoor, and so is an attacker that comes back under a fresh address. The inputs come
      from other miners' earlier rounds only, so an honest update's own noise cannot pick them and
      the test keeps its level. Digits CNN, backdoor, 6 replica runs each: the attackers were first
      forfeited in rounds (2, 2, 3), (1, 2, 2), (2, 2, 3), (1, 1, 2), (1, 1, 2), (1, 1, 3) with it and
      (1, 2, 4), (1, 3, 4), (1, 3, 3), (1, 1, 3), (1, 1, 2), (1, 1, 2) without; no honest code-9 forfeit
      in either; breast cancer, 20 runs: 2 honest code-9 forfeits with it, 3 without;
    * ``good_standing_warning`` — a miner with an accepted update in this bounty, no forfeited one
      (on chain) and no earlier warning, whose update would be forfeited for what it does to the
      model (:data:`WARNED_CODES`: harm, pointing away, collusion, a subgroup), is warned instead:
      the update is rejected and its stake returned, and the warning in its evidence
      (:attr:`MinerEvidence.warnings`) makes the next such update a forfeit. These rules are tests
      at a level, and an honest skewed shard fails one now and then (digits, 100 replica runs: 8 of
      3000 honest updates forfeited); a small shard paid the floor earns about a tenth of a stake
      in a bounty, so one forfeit left it below zero. With warnings: 1 forfeit, and none below zero
      (digits CNN backdoor, 10 runs: 2 honest miners below zero without, none with). A label flipper
      is forfeited from its first round, before it has standing; an attacker that works honestly
      first gets one refused attempt for free, which the owner never uses. ``False``: no warnings;
    * ``subgroup_step_search`` — before the subgroup rule removes an update, the round's other
      step sizes (``step_search``) are tried: if one keeps every subgroup within tolerance and still
      gains, no update goes. A full step from skewed shards often costs one class a little while a
      shorter one does not (breast cancer by loss, 100 replica runs: honest submissions in a version
      0.68 -> 0.76 on average, runs under 60 % 27 -> 17; digits 0.940 -> 0.951, final accuracy
      unchanged). Only in a round the harm rule has judged (at least :data:`MIN_HARM_SAMPLES`
      updates): alone, a label flip passed at whichever step happened to gain (2 of 8 runs of the
      page test's one-update round). ``False``: the rule removes updates at the first step only;
    * ``noise_harm_factor`` — a norm outlier that ``refund_declared_noise`` would refund (its excess
      norm is the DP noise it declares) is first applied alone, clipped to the round's bound like the
      others, and forfeited (code 8) when it raises the validation loss more than this many of the
      round's robust spreads above the median change (for a suspect: times ``suspect_harm_factor /
      harm_factor``); else its stake comes back as before. A label-flipped shard of a few rows is such
      an outlier every round: refunded, it was never paid and never forfeited, so it ended at zero
      (breast cancer by loss, 100 replica runs: attackers at or above zero in 17 runs without, 5 with;
      honest miners below zero 5 and 4). Twice ``harm_factor``: a noisy update barely moves the model
      once clipped, and one that changes nothing is at most 4 spreads above a round that helps (the
      spread is at least a quarter of the median); the largest honest one seen was 6.8 (24 honest
      small shards in 50 runs), the flippers' 1.8 to 22. ``None``: refunded unjudged;
    * ``class_harm_factor`` — class-wide harm (code 8): in a classification round of at least 4
      classes whose typical update lowers the loss of at least half of them, an update that alone
      raises the loss of more classes than a fair coin would (:func:`class_sign_threshold`: 8 of 10)
      and the total loss by more than this many robust spreads is forfeited. Flipped labels hurt every
      class; an honest skewed shard helps the classes it holds. In a first round from random weights
      honest updates differ widely in how much they help, so a flipper can sit 2 to 4 spreads above
      the median; by class it stands out (digits, per update alone: honest shards hurt at most 6 of 10
      classes in rounds 1–2, flippers 7 to 10). Digits MLP, 100 replica runs: runs with a flipper's
      update accepted 17 → 6 (updates 43 → 9), attackers at or above zero 3 → 1, honest forfeits
      1 → 2, honest below zero 0 → 0; digits CNN, 16 runs: 10 → 3 (41 → 4), attackers at or above
      zero 4 → 0. With 2 or 3 classes (breast cancer) a sign pattern is no evidence and the rule is
      off: there it cost honest one-class shards (forfeits 19 → 36 in 100 runs) when it was tried
      with "both classes". ``None``: off;
    * ``retract_convicted`` — a backdoor paid before its miner was caught stays in the model: the
      clawback takes the money back, not the weights (digits CNN, backdoor, 16 replica runs: success
      of the trigger 0–58 %, mean 11 %, though every attacker was forfeited in the end). Each miner's
      accepted updates are therefore summed as they went into the model, first layer only, by input
      unit (:attr:`MinerEvidence.applied_sum`); once one of its updates is forfeited by code 9, the
      next version takes that sum back out on the inputs its forfeits named — the trigger's place —
      and nowhere else, so the clean work of the same updates stays (validation accuracy unchanged).
      The version must still gain and keep every subgroup with it out, or the retraction waits for a
      round that can carry it (the contract takes only a better score). An honest update that a
      code-9 false alarm names loses only its weights on that one input. Digits CNN, the same 16
      runs: trigger success mean 3 %, at most 21 %; final accuracy 0.922 (0.921 without). Audits
      replay it from the evidence like every other verdict. ``False``: weights are never taken back;

    * ``mechanism_bound`` — a DP update larger than its own declaration allows
      (:func:`mechanism_norm_bound`: ``steps`` steps of the bounty's ``lr`` on gradients clipped to
      ``C``, plus the declared noise) was scaled after training, and is forfeited as a norm outlier
      (4) whatever the round's median says: the median is no reference when a third of the round is
      boosted, whose spread inflates the robust limit (breast cancer, scale attack, 200 replica runs
      with the same DP noise: an attacker at or above zero in 14 runs, its clipped update accepted
      and paid like honest work; 0 with the bound). A bound, not an estimate: honest updates of the
      demo's replicas measure 0.07 to 0.46 of it (digits MLP and CNN, breast cancer: 1,324 updates),
      boosted x20 ones 1.4 to 7.5. Untested: an update without DP, a bounty whose DP optimizer is not
      plain SGD. ``False``: off;
    * ``class_f1`` — with the classes as subgroups (no group column) and accuracy as the metric, a
      class's score is its F1 (:func:`mine.evaluate.evaluate`), not its recall. A random initial model
      often calls nearly every row one class, whose recall then starts near 1: every update that learns
      the other classes "hurt" it, and a bounty posted from a template refused every honest update
      (3 of 3, class 9 from 0.92 to 0.58–0.64; by F1 the next was accepted, 0.1175 → 0.68). The demo's
      scenarios end as before (default 0.9244, 30/30 honest in a version; backdoor seed 5: 28/28,
      attackers −0.04 each). ``False``: recall;

    The pooled rules read the :class:`MinerEvidence` that :meth:`judge` is given and return it
    updated (:attr:`RoundDecision.evidence`). Settings added after bounties began recording every
    setting are in :attr:`ADDED_LATER`, with the value that replays a record lacking them.
    """

    #: Settings newer than version 0's full record of the policy, with the value that means "off":
    #: a bounty posted before a setting existed replays without it.
    ADDED_LATER: ClassVar[dict[str, Any]] = {"pooled_concentration": False, "pooled_harm_z": None,
                                             "refund_declared_noise": False, "suspects_must_help": None,
                                             "concentration_max_epsilon": None, "concentration_head": False,
                                             "harm_noise_from_all": False, "summed_concentration": False,
                                             "share_quantile": None, "clawback_concentrated": False,
                                             "clawback_alpha": None, "guided_concentration": False,
                                             "good_standing_warning": False, "subgroup_step_search": False,
                                             "noise_harm_factor": None, "class_harm_factor": None,
                                             "retract_convicted": False, "mechanism_bound": False,
                                             "class_f1": False}

    name: ClassVar[str] = "round"
    server_lr: float = 1.0
    outlier_factor: float = 4.0
    min_alignment: float | None = None
    keep_aligned: bool = True
    harm_factor: float | None = 4.0
    suspect_harm_factor: float | None = 2.0
    collusion_factor: float | None = None
    min_similarity: float = 0.5
    precision_weighting: bool = False
    min_history: int = 3
    history_window: int = 40
    clip_norm_factor: float = 1.0
    loss_tolerance: float = 0.0
    subgroup_tolerance: float = 0.1
    min_improvement: float = 0.0
    share_floor: float = 0.3
    step_search: tuple[float, ...] = (1.0, 0.5, 2.0, 0.25)
    max_epsilon: float | None = None
    concentration_alpha: float | None = 5e-3
    concentration_max_epsilon: float | None = 16.0
    pooled_concentration: bool = True
    pooled_harm_z: float | None = None
    refund_declared_noise: bool = True
    suspects_must_help: int | None = 2
    concentration_head: bool = True
    harm_noise_from_all: bool = True
    summed_concentration: bool = True
    share_quantile: float | None = 0.9
    clawback_concentrated: bool = True
    clawback_alpha: float | None = 5e-5
    guided_concentration: bool = True
    good_standing_warning: bool = True
    subgroup_step_search: bool = True
    noise_harm_factor: float | None = 8.0
    class_harm_factor: float | None = 2.0
    retract_convicted: bool = True
    mechanism_bound: bool = True
    class_f1: bool = True

    def __post_init__(self) -> None:
        check_settings(self, non_negative=("min_improvement", "subgroup_tolerance", "loss_tolerance"),
                       positive=("outlier_factor", "server_lr", "clip_norm_factor"),
                       positive_int=("min_history", "history_window"))
        for field in ("harm_factor", "suspect_harm_factor", "collusion_factor", "pooled_harm_z", "noise_harm_factor",
                      "class_harm_factor"):
            v = getattr(self, field)
            if v is not None and not (math.isfinite(v) and v > 0):
                raise ValidationError(f"{field} must be a finite number > 0 or None, got {v!r}")
        if not -1.0 <= self.min_similarity <= 1.0:
            raise ValidationError(f"min_similarity must be between -1 and 1, got {self.min_similarity!r}")
        if self.min_alignment is not None and not -1.0 <= self.min_alignment <= 1.0:
            raise ValidationError(f"min_alignment must be between -1 and 1, got {self.min_alignment!r}")
        if not 0.0 <= self.share_floor <= 1.0:
            raise ValidationError(f"share_floor must be between 0 and 1, got {self.share_floor!r}")
        steps = tuple(float(m) for m in self.step_search)
        if not steps or not all(math.isfinite(m) and m > 0 for m in steps):
            raise ValidationError(f"step_search must be a non-empty list of finite numbers > 0, got {self.step_search!r}")
        object.__setattr__(self, "step_search", steps)
        must = self.suspects_must_help
        if must is not None and (isinstance(must, bool) or not isinstance(must, int) or must < 1):
            raise ValidationError(f"suspects_must_help must be an integer >= 1 or None, got {must!r}")
        for field in ("max_epsilon", "concentration_max_epsilon"):
            v = getattr(self, field)
            if v is not None and not (math.isfinite(v) and v > 0):
                raise ValidationError(f"{field} must be a finite number > 0, got {v!r}")
        a = self.concentration_alpha
        if a is not None and not (math.isfinite(a) and 0 < a < 1):
            raise ValidationError(f"concentration_alpha must be between 0 and 1 (exclusive) or None, got {a!r}")
        c = self.clawback_alpha
        if c is not None and not (isinstance(c, (int, float)) and math.isfinite(c) and 0 < c <= (a or 1.0)):
            raise ValidationError(f"clawback_alpha must be > 0 and at most concentration_alpha ({a!r}) or None, "
                                  f"got {c!r}")
        q = self.share_quantile
        if q is not None and not (isinstance(q, (int, float)) and 0 < q < 1):
            raise ValidationError(f"share_quantile must be between 0 and 1 (exclusive) or None, got {q!r}")

    def settings(self) -> dict[str, Any]:
        """The settings as a dict (with ``policy`` = the registry name)."""
        return {"policy": self.name, **dataclasses.asdict(self)}

    def untested_for_backdoors(self, manifest: Manifest) -> str | None:
        """Which updates a bounty with this policy and model would take without the backdoor test
        (code 9), in words an owner can act on; ``None`` when every update it takes is tested.

        The test measures against an update's DP noise, so an update without DP (a bounty without
        ``max_epsilon``) or above ``concentration_max_epsilon`` is not tested, nor is any update of a
        model whose first layer has too few inputs (:func:`mine.concentration.input_groups`).
        """
        if self.concentration_alpha is None:
            return "no update takes the backdoor test (code 9): it is off (concentration_alpha is None)"
        if input_groups(manifest, head=self.concentration_head) is None:
            return (f"no update takes the backdoor test (code 9): the model's first layer has fewer than {MIN_GROUPS} "
                    "inputs or too few weights per input")
        cap, limit = self.max_epsilon, self.concentration_max_epsilon
        if cap is None:
            above = f" and DP updates above epsilon {limit:g}" if limit is not None else ""
            bound = f" <= {limit:g}" if limit is not None else ""
            return (f"updates trained without DP{above} skip the backdoor test (code 9), which measures against DP "
                    f"noise; max_epsilon{bound} (`mine bounty create --max-epsilon`) refuses them (code 7)")
        if limit is not None and cap > limit:
            return (f"DP updates with epsilon above {limit:g} (the bounty allows up to {cap:g}) skip the backdoor "
                    f"test (code 9), which needs epsilon <= {limit:g}")
        return None

    def judge(self, manifest: Manifest, current_state: Mapping[str, torch.Tensor], items: Sequence[RoundItem],
              validation: Validation, *, bounty_id: int, current_version: int,
              history: Sequence[float] = (), suspects: Collection[str] | Mapping[str, int] = (),
              evidence: Mapping[str, MinerEvidence] | None = None) -> RoundDecision:
        """Verdicts for every item (in order), the new state if any is accepted; never raises on bad bytes.

        ``suspects``: miners with a forfeited earlier submission in this bounty (on chain), with how
        many (a plain collection: one each);
        ``evidence``: the pooled evidence of the bounty's earlier rounds (:attr:`RoundDecision.evidence`
        of the round before; empty for the first).

        The stages, in order; each takes the updates it rejects out of the round (:class:`_Round`).
        """
        r = _Round(self, manifest, current_state, items, validation, suspects=suspects, evidence=evidence)
        r.screen(bounty_id=bounty_id, current_version=current_version)  # 5, 1, 6, 7, stale (2)
        r.drop_norm_outliers(history)  # 4 (boosted, outliers); a small shard's noisy one waits for stage 8
        r.drop_concentrated()  # 9
        r.measure()  # the clipping bound, each update's alignment, similarity and weight
        r.drop_harmful()  # 8 (and the noisy outliers: 8 or refunded 4)
        r.drop_colluding()  # 8, off by default
        r.trim()  # leave-one-out (8) and subgroups (3)
        return r.settle()  # the step size (with any retraction), the improvement (2) and the shares


class _Round:
    """The working state of one :meth:`RoundPolicy.judge`: the updates still in the round (``live``),
    the verdicts so far, and what the stages measure for the next ones."""

    def __init__(self, policy: RoundPolicy, manifest: Manifest, current_state: Mapping[str, torch.Tensor],
                 items: Sequence[RoundItem], validation: Validation, *,
                 suspects: Collection[str] | Mapping[str, int],
                 evidence: Mapping[str, MinerEvidence] | None) -> None:
        self.policy, self.manifest, self.current_state, self.items = policy, manifest, current_state, items
        self.pooled: dict[str, MinerEvidence] = {m.lower(): e for m, e in (evidence or {}).items()}
        self.new_harm_z: dict[int, float] = {}  # this round's harm z-scores, pooled once the verdicts are known
        self.X, self.y, self.groups = unpack_validation(validation)
        self.hib = manifest.higher_is_better
        self.before = self.scored(current_state)
        self.loss_before = validation_loss(manifest, current_state, self.X, self.y)
        self.verdicts: dict[int, ItemVerdict] = {}
        self.deltas: dict[int, dict[str, torch.Tensor]] = {}
        self.norms: dict[int, float] = {}
        self.private: dict[int, bool] = {}
        self.metas: dict[int, dict[str, str]] = {}
        self.by_index = {it.index: it for it in items}
        self.forfeits: Counter[str] = Counter()  # the miners' forfeited submissions in this bounty, on chain
        for m, n in (suspects.items() if isinstance(suspects, Mapping) else ((m, 1) for m in suspects)):
            self.forfeits[m.lower()] += int(n)
        self.warned: dict[int, str] = {}  # item -> miner: a forfeit turned into a warning this round
        self.live: list[int] = []
        self.screened: list[int] = []  # passed the norm check: the round's noise level is measured on these
        self.noisy: dict[int, str] = {}  # norm outliers explained by their declared DP noise, with the reason
        self.bound: float | None = None
        self.scales: dict[int, float] = {}
        self.cosines: dict[int, float] = {}
        self.similar: dict[int, float] = {}
        self.precision: dict[int, float] = {}
        self.min_alignment = 0.0
        self.harms: dict[int, float] = {}
        self.contributions: dict[int, float] = {}
        self.applied: dict[int, torch.Tensor] = {}  # accepted item -> its first layer as it went into the model
        self.retracted: tuple[str, ...] = ()  # miners whose flagged inputs the new state takes back out

    # -- verdicts ---------------------------------------------------------------------------------

    def miner(self, index: int) -> str:
        return self.by_index[index].submitter.lower()

    def sanction(self, index: int, code: int, reason: str, refund: bool) -> tuple[str, bool]:
        """The reason and refund of a rejection: a miner in good standing has its first statistical
        forfeit in the bounty turned into a warning."""
        miner = self.miner(index)
        record = self.pooled.get(miner, MinerEvidence())
        if (refund or not self.policy.good_standing_warning or code not in WARNED_CODES or not record.accepted
                or record.warnings or self.forfeits[miner] or miner in self.warned.values()):
            return reason, refund
        self.warned[index] = miner
        return (reason + f"; a warning, stake returned: its {record.accepted} earlier accepted update(s) in "
                         "this bounty and none forfeited (the next such update is forfeited)"), True

    def reject(self, index: int, code: int, reason: str, *, refund: bool | None = None, **kw: float) -> None:
        reason, back = self.sanction(index, code, reason, code in REFUNDED_CODES if refund is None else refund)
        self.verdicts[index] = ItemVerdict(index, self.by_index[index].submitter, 0, code, reason, back, **kw)

    def diag(self, i: int) -> dict[str, float]:
        return {"harm": self.harms.get(i, math.nan), "similarity": self.similar[i]}

    # -- the mean of a set of updates -------------------------------------------------------------

    def weights_of(self, members: Sequence[int], mult: float = 1.0) -> list[float]:
        """Each member's weight in the round's step: ``server_lr * mult`` over the mean, times its clipping."""
        w = self.policy.server_lr * mult / sum(self.precision[i] for i in members)
        return [w * self.precision[i] * self.scales[i] for i in members]

    def scored(self, state: Mapping[str, torch.Tensor]) -> EvalResult:
        """``state``'s validation score and per-subgroup scores (a class's by ``class_f1``)."""
        return evaluate_state(self.manifest, state, self.X, self.y, self.groups, class_f1=self.policy.class_f1)

    def state_of(self, members: Sequence[int], mult: float = 1.0,
                 minus: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """The current model plus ``server_lr * mult`` times the weighted mean of the clipped ``members``
        (minus ``minus``, float64, when given: the weights :attr:`retractions` takes back out)."""
        if not members:
            return {k: v.clone() for k, v in self.current_state.items()}
        agg = aggregate([self.deltas[i] for i in members], self.weights_of(members, mult))
        if minus is not None:
            agg = {k: agg[k] - minus[k] for k in agg}
        return {k: (self.current_state[k].detach().to(torch.float64) + agg[k]).to(torch.float32)
                for k in self.current_state}

    def loss_of(self, members: Sequence[int]) -> float:
        return validation_loss(self.manifest, self.state_of(members), self.X, self.y) if members else self.loss_before

    def score_of(self, members: Sequence[int], mult: float = 1.0) -> EvalResult:
        return self.scored(self.state_of(members, mult))

    def clipped_harm(self, i: int) -> float:
        """The loss change of an update outside the mean, applied alone and clipped like the round's."""
        applied = apply_update(self.current_state, self.deltas[i], scale=self.policy.server_lr, max_norm=self.bound)
        return validation_loss(self.manifest, applied, self.X, self.y) - self.loss_before

    # -- the stages -------------------------------------------------------------------------------

    def screen(self, *, bounty_id: int, current_version: int) -> None:
        """Each update alone: readable (5), well formed (1), the submitter's (6), within the bounty's ε (7),
        trained from the current version (2, stale: refunded)."""
        for it in self.items:
            if it.update is None:
                self.reject(it.index, UNREADABLE, it.problem or REASONS[UNREADABLE])
                continue
            tensors, meta, rej = parse_delta(self.manifest, it.update)
            if rej is None:
                rej = check_origin(meta, submitter=it.submitter, bounty_id=bounty_id, base_version=it.base_version)
            if rej is None:
                rej = check_epsilon(meta.get("dp"), max_epsilon=self.policy.max_epsilon)
            if rej is None and it.base_version != current_version:
                rej = Rejection(NO_IMPROVEMENT, f"stale: trained from version {it.base_version}, the model is at "
                                                f"version {current_version} (stake returned)")
            if rej is not None or tensors is None:
                self.reject(it.index, rej.code, rej.reason)  # type: ignore[union-attr]
                continue
            self.deltas[it.index], self.norms[it.index], self.metas[it.index] = tensors, update_norm(tensors), meta
            self.private[it.index] = meta.get("dp", "off") != "off"
        self.live = list(self.deltas)

    def drop_norm_outliers(self, history: Sequence[float]) -> None:
        """Boosted updates (4: larger than their declared DP mechanism allows, ``mechanism_bound``), then norm
        outliers against the round's own median and the recent accepted norms (4). An outlier whose
        excess is the DP noise it declares (a small shard) is refunded, or, with ``noise_harm_factor``,
        set aside to be judged for harm first."""
        p, live, norms = self.policy, self.live, self.norms
        # the round's reference (median, spread) stays every update's, as without the bound, which only
        # adds forfeits: without the boosted ones a linear model's honest outliers, whose noise cannot
        # be measured, would meet a tighter limit (diabetes replica: 3 honest forfeits in 60 runs)
        boosted: dict[int, float] = {}
        for i in live if p.mechanism_bound else ():
            meta = self.metas[i]
            bound = mechanism_norm_bound(self.manifest, meta.get("dp"), meta.get("examples_bucket"),
                                         sum(t.numel() for t in self.deltas[i].values()))
            if bound is not None and not norms[i] <= bound:
                boosted[i] = bound
        flags = round_outliers([norms[i] for i in live], list(history)[-p.history_window:],
                               factor=p.outlier_factor, min_history=p.min_history)
        med = statistics.median([norms[i] for i in live]) if live else 0.0
        finite = [norms[i] for i in live if math.isfinite(norms[i])]
        limit = robust_limit(finite, p.outlier_factor)[0] if finite else 0.0
        for i, out in zip(list(live), flags):
            if i in boosted:
                self.reject(i, OUTLIER_NORM, f"update norm {norms[i]:.4g} is above {boosted[i]:.4g}, the most its "
                                             "declared DP mechanism and the bounty's learning rate can produce (scaled "
                                             "after training)", norm=norms[i])
                live.remove(i)
                continue
            if not out:
                continue
            reason = f"update norm {norms[i]:.4g} is an outlier (round median {med:.4g})"
            # an honest small shard's DP update is mostly noise: too noisy to use, not an attack
            noisy = p.refund_declared_noise and math.isfinite(norms[i]) and noise_explains_norm(
                self.deltas[i], declared_noise_std(self.manifest, self.metas[i].get("dp"),
                                                   self.metas[i].get("examples_bucket")), limit)
            if noisy and p.noise_harm_factor is not None:
                self.noisy[i] = reason
                live.remove(i)
                continue
            self.reject(i, OUTLIER_NORM, reason + (_NOISY_REFUND if noisy else ""), refund=noisy, norm=norms[i])
            live.remove(i)
        self.screened = list(live)

    def drop_concentrated(self) -> None:
        """Concentration (9): a DP update that puts far more of its first-layer energy on one input than
        clean validation data does, alone, pooled with its miner's earlier updates, summed, or on an
        input another miner's forfeit named."""
        p, live, pooled = self.policy, self.live, self.pooled
        where = input_groups(self.manifest, head=p.concentration_head) if p.concentration_alpha is not None else None
        # a non-private update has no noise level to test against; one with very little noise (a large
        # epsilon) is not tested either: honest drift then exceeds what clean data puts on an input
        tested = [i for i in live if self.private[i] and (p.concentration_max_epsilon is None or update_epsilon(
            self.metas[i].get("dp")) <= p.concentration_max_epsilon)]
        if where is None or not tested:
            return
        name, axis, input_names, shape = where
        # this update alone is tested against the class means; the pooled tests (which add up the
        # same validation set's sampling error round after round) against their bootstrap bound
        allowed, upper = clean_input_bounds(self.manifest, self.current_state, self.X, self.y, self.groups, name, axis,
                                            shape, quantile=p.share_quantile)
        pooled_allowed = allowed if upper is None else upper
        # where earlier rounds found a trigger (each miner's code-9 forfeits): fixed before this round
        flags = {m: e.flagged_inputs for m, e in pooled.items() if e.flagged_inputs}
        for i in tested:
            matrix = group_matrix(self.deltas[i][name], axis, shape)
            pvalues = concentration_pvalues(matrix, allowed)
            miner = self.miner(i)
            prior = pooled.get(miner, MinerEvidence())
            terms = fisher_terms(pvalues if upper is None else concentration_pvalues(matrix, upper))
            if prior.concentration_tests and len(prior.concentration_terms) == len(terms):
                terms = [a + b for a, b in zip(prior.concentration_terms, terms)]
                count = prior.concentration_tests + 1
            else:
                count = 1
            flat = matrix.reshape(-1)
            summed: torch.Tensor | None = None
            if flat.numel() <= SUM_MAX_ENTRIES:  # a huge first layer is not summed (the owner's file)
                summed = flat
                if count > 1 and len(prior.concentration_sum) == flat.numel():
                    summed = torch.tensor(prior.concentration_sum, dtype=torch.float64) + flat
            pooled[miner] = dataclasses.replace(
                prior, concentration_tests=count, concentration_terms=tuple(terms),
                concentration_sum=tuple(summed.tolist()) if summed is not None else ())
            # the tests of this update; each at the limit divided by their number
            tests: list[tuple[str, list[float], list[float]]] = []
            if count == 1 or not p.pooled_concentration or upper is not None:
                tests.append(("alone", pvalues, allowed))
            if p.pooled_concentration and count > 1:
                tests.append(("fisher", fisher_combined(terms, count), pooled_allowed))
            if p.summed_concentration and count > 1 and summed is not None:
                tests.append(("sum", concentration_pvalues(summed.reshape(matrix.shape), pooled_allowed),
                              pooled_allowed))
            # the inputs other miners' forfeits named: a shared trigger is tested there without
            # dividing the limit by every input (only by their number)
            known = sorted({g for m, gs in flags.items() if m != miner for g in gs if g < len(pvalues)})
            if p.guided_concentration and known:
                own = (concentration_pvalues(summed.reshape(matrix.shape), pooled_allowed)
                       if count > 1 and summed is not None else pvalues)
                tests.append(("guided", [own[g] if g in known else 1.0 for g in range(len(own))],
                              pooled_allowed if count > 1 and summed is not None else allowed))
            alpha = p.concentration_alpha / len(tests)  # type: ignore[operator]

            def units(kind: str, pv: Sequence[float]) -> int:  # what the limit is divided by
                return len(known) if kind == "guided" else len(pv)

            hit = next(((kind, pv, allow, j) for kind, pv, allow in tests
                        if (j := concentrated(pv, alpha=alpha * len(pv) / units(kind, pv))) is not None), None)
            if hit is None:
                continue
            kind, pv, allow, j = hit
            bar = f"limit {alpha:g} / {units(kind, pv)} inputs"
            if kind == "guided":
                own_matrix = summed.reshape(matrix.shape) if count > 1 and summed is not None else matrix
                share = signal_shares(own_matrix)[j]
                summed_p = (f", {pv[j]:.2g} for the sum of its {count} tested updates in this bounty"
                            if own_matrix is not matrix else "")
                evidence = (f"(p = {pvalues[j]:.2g} alone{summed_p}; another miner's update was forfeited "
                            f"for this input; {bar})")
            elif kind == "sum":
                share = signal_shares(summed.reshape(matrix.shape))[j]  # type: ignore[union-attr]
                evidence = (f"(p = {pvalues[j]:.2g} alone; the sum of its {count} tested updates in this "
                            f"bounty gives p = {pv[j]:.2g}; {bar})")
            elif kind == "fisher":
                share = signal_shares(matrix)[j]
                evidence = (f"(p = {pvalues[j]:.2g} alone; with its {count - 1} earlier tested update(s) in "
                            f"this bounty, Fisher's combined p = {pv[j]:.2g}; {bar})")
            else:
                share = signal_shares(matrix)[j]
                evidence = f"(p = {pvalues[j]:.2g} with its DP noise; {bar})"
            # the harsher sanction (the miner's vesting rewards) needs the stronger evidence
            claw = p.clawback_concentrated and (p.clawback_alpha is None or any(
                min(tp) < p.clawback_alpha / len(tests) / units(tk, tp) for tk, tp, _ in tests))
            if claw:
                evidence += "; under the clawback limit: its vesting rewards in this bounty are burned"
            self.reject(i, CONCENTRATED,
                        f"{share:.0%} of its {'summed ' if kind == 'sum' else ''}signal is on {input_names[j]!r}, "
                        f"where the clean validation rows of any class or group put at most {allow[j]:.1%} "
                        + evidence, norm=self.norms[i], clawback=claw)
            live.remove(i)
            flagged = pooled[miner]
            pooled[miner] = dataclasses.replace(flagged, flagged_inputs=tuple(sorted({*flagged.flagged_inputs, j})))

    def measure(self) -> None:
        """What the later stages need of the updates left: the clipping bound (the median norm times
        ``clip_norm_factor``), each update's cosine with the rest of the round and its largest with
        another update, and its weight in the mean (by precision in a round of DP updates)."""
        p, live, norms = self.policy, self.live, self.norms
        self.bound = statistics.median([norms[i] for i in live]) * p.clip_norm_factor if live else None
        self.scales = dict(zip(live, clip_scales([norms[i] for i in live], self.bound)))
        self.cosines = dict(zip(live, alignments([self.deltas[i] for i in live], [self.scales[i] for i in live])))
        dim = sum(t.numel() for t in self.current_state.values())
        self.min_alignment = noise_alignment(dim) if p.min_alignment is None else p.min_alignment
        self.similar = dict(zip(live, pairwise_similarity([self.deltas[i] for i in live])))
        # a round of DP updates is averaged by precision (inverse noise variance), a plain one equally
        dp_round = p.precision_weighting and bool(live) and all(self.private[i] for i in live)
        self.precision = dict(zip(live, precision_weights([norms[i] for i in live]) if dp_round else [1.0] * len(live)))

    def drop_harmful(self) -> None:
        """Harm (8): each update applied alone, against the round's own noise level of such changes
        (stricter for a suspect; pooled over the miner's rounds with ``pooled_harm_z``); a suspect that
        must help and does not is refunded. The noisy outliers set aside are judged here too."""
        p, live, norms, harms = self.policy, self.live, self.norms, self.harms
        if p.harm_factor is None or not live:
            for i, reason in self.noisy.items():  # no noise level to judge them against
                self.reject(i, OUTLIER_NORM, reason + _NOISY_REFUND, refund=True, norm=norms[i])
            return
        # each update applied alone: a label flip raises the loss, honest DP noise scatters
        harms.update({i: validation_loss(self.manifest, self.state_of([i]), self.X, self.y) - self.loss_before
                      for i in live})
        reference = [i for i in self.screened if i in live or p.harm_noise_from_all]
        for i in reference:
            if i not in harms:  # forfeited by the concentration test
                harms[i] = self.clipped_harm(i)
        suspected = {m for m, n in self.forfeits.items() if n > 0}
        strict = p.harm_factor if p.suspect_harm_factor is None else p.suspect_harm_factor
        flagged = dict(zip(reference, standalone_harm([harms[i] for i in reference], factor=[
            strict if self.miner(i) in suspected else p.harm_factor for i in reference])))
        med_harm = statistics.median([harms[i] for i in reference])
        level = harm_level([harms[i] for i in reference])
        class_wide = (self.class_wide_harm(flagged, level)
                      if p.class_harm_factor is not None and level is not None else {})
        self.new_harm_z = {i: z for i, z in zip(reference, harm_zscores([harms[i] for i in reference]))
                           if z is not None}
        for i, reason in self.noisy.items():
            harms[i] = h = self.clipped_harm(i)
            f = float(p.noise_harm_factor or p.harm_factor)  # stricter for a suspect, as above
            if self.miner(i) in suspected:
                f *= strict / p.harm_factor
            if level is not None and beyond_level(h, level, f):
                self.reject(i, NEGATIVE_CONTRIBUTION, reason + "; clipped to the round's bound and applied "
                            f"alone it raises the validation loss by {h:.4g}, more than {f:g} robust spreads above "
                            f"the round's median change {level[0]:.4g}: its signal hurts under its noise",
                            norm=norms[i], harm=h)
            else:
                self.reject(i, OUTLIER_NORM, reason + _NOISY_REFUND, refund=True, norm=norms[i], harm=h)
        for i in list(live):
            seen = {"norm": norms[i], "alignment": self.cosines[i], "harm": harms[i], "similarity": self.similar[i]}
            prior_z = self.pooled.get(self.miner(i), MinerEvidence()).harm_z
            z = self.new_harm_z.get(i)
            if (not flagged[i] and i not in class_wide and p.pooled_harm_z is not None and prior_z and z is not None
                    and z > 0 and stouffer([*prior_z, z]) > p.pooled_harm_z):
                self.reject(i, NEGATIVE_CONTRIBUTION,
                            f"applied alone it raises the validation loss by {harms[i]:.4g} ({z:.2f} robust spreads "
                            f"above the round's median); with its {len(prior_z)} earlier unforfeited update(s) in "
                            f"this bounty that is a combined z of {stouffer([*prior_z, z]):.2f}, above "
                            f"{p.pooled_harm_z:g}: consistently harmful", **seen)
                live.remove(i)
            elif i in class_wide:
                hurt, classes = class_wide[i]
                self.reject(i, NEGATIVE_CONTRIBUTION,
                            f"applied alone it raises the validation loss by {harms[i]:.4g}, more than "
                            f"{p.class_harm_factor:g} robust spreads above the round's median change {med_harm:.4g}, "
                            f"and the loss of {hurt} of the {classes} classes, while the round's typical update "
                            "lowers at least half of them: flipped labels hurt every class", **seen)
                live.remove(i)
            elif flagged[i]:
                self.reject(i, NEGATIVE_CONTRIBUTION,
                            f"applied alone it raises the validation loss by {harms[i]:.4g}, beyond the round's "
                            f"noise (median change {med_harm:.4g})"
                            + ("; judged strictly: an earlier update of this miner was forfeited"
                               if self.miner(i) in suspected else ""), **seen)
                live.remove(i)
            elif (p.suspects_must_help is not None and harms[i] > 0
                  and self.forfeits[self.miner(i)] >= p.suspects_must_help):
                self.reject(i, NEGATIVE_CONTRIBUTION,
                            f"applied alone it raises the validation loss by {harms[i]:.4g}; "
                            f"{self.forfeits[self.miner(i)]} earlier updates of this miner were forfeited "
                            "in this bounty, so only an update that helps alone is used (stake returned)",
                            refund=True, **seen)
                live.remove(i)

    def class_wide_harm(self, flagged: Mapping[int, bool], level: tuple[float, float]) -> dict[int, tuple[int, int]]:
        """The updates not ``flagged`` that class-wide harm forfeits, with (classes hurt, classes).

        Class-wide harm (8, ``class_harm_factor``): in a round whose typical update lowers the loss of
        at least half the validation classes, an update that alone raises the loss of more classes than a
        fair coin would (one-sided binomial p <= :data:`CLASS_SIGN_ALPHA`; at least 4 classes) and the
        total loss by more than ``class_harm_factor`` robust spreads is forfeited: flipped labels hurt
        every class, an honest skewed shard helps the classes it holds."""
        base = class_losses(self.manifest, self.current_state, self.X, self.y)  # empty for regression
        classes = len(base)
        if classes < 4:
            return {}  # two or three classes: a sign pattern is no evidence
        hurt = {i: sum(loss > base[c] for c, loss in class_losses(self.manifest, self.state_of([i]), self.X,
                                                                   self.y).items()) for i in self.live}
        if statistics.median(hurt.values()) > classes / 2:
            return {}  # the round's typical update hurts most classes (near convergence): no reference
        needed = class_sign_threshold(classes)
        return {i: (hurt[i], classes) for i in self.live if not flagged[i] and hurt[i] >= needed
                and beyond_level(self.harms[i], level, self.policy.class_harm_factor)}  # type: ignore[arg-type]

    def drop_colluding(self) -> None:
        """Collusion (8, ``collusion_factor``; off by default): updates unusually similar to another."""
        p, live = self.policy, self.live
        if p.collusion_factor is None or not live:
            return
        flags = similarity_outliers([self.similar[i] for i in live], factor=p.collusion_factor,
                                    min_similarity=p.min_similarity)
        for i, bad in zip(list(live), flags):
            if bad:
                self.reject(i, NEGATIVE_CONTRIBUTION,
                            f"it is unusually similar to another update of its round (cosine {self.similar[i]:.2f}): "
                            "colluding updates", norm=self.norms[i], alignment=self.cosines[i],
                            harm=self.harms.get(i, math.nan), similarity=self.similar[i])
                live.remove(i)

    def stepped_ok(self, mult: float) -> bool:
        """Whether the round's mean at ``mult`` times the step keeps every subgroup and gains."""
        p, before = self.policy, self.before
        result = self.score_of(self.live, mult)
        return (check_subgroups(before.per_group, result.per_group, higher_is_better=self.hib,
                                tolerance=p.subgroup_tolerance) is None
                and check_improvement(before.score, result.score, higher_is_better=self.hib,
                                      min_improvement=p.min_improvement) is None)

    def trim(self) -> None:
        """Leave-one-out (8) and subgroups (3), one update at a time: the worst-valued update that points
        away goes (with ``keep_aligned`` the others stay in the mean); then, while the mean hurts a
        subgroup beyond tolerance and no other step size spares it, the update whose removal helps that
        subgroup most goes."""
        p, live, cosines, before = self.policy, self.live, self.cosines, self.before
        # only updates the harm rule has judged (a round with a noise level) are kept whole by another
        # step: alone, a harmful update could pass at whichever step size happens to gain
        harm_judged = p.subgroup_step_search and p.harm_factor is not None and len(self.screened) >= MIN_HARM_SAMPLES
        while live:
            # leave-one-out: the round's mean without update i against the mean with it
            loss_all = self.loss_of(live)
            contrib = loo_contributions(loss_all, [self.loss_of([j for j in live if j != i]) for i in live])
            self.contributions = contributions = dict(zip(live, contrib))
            # with keep_aligned only an update pointing away can go; the others stay in the mean
            candidates = [i for i in live if not (p.keep_aligned and cosines[i] >= self.min_alignment)]
            worst = min(candidates, key=lambda i: (contributions[i], i)) if candidates else None
            if worst is not None and contributions[worst] < -p.loss_tolerance:
                aligned = cosines[worst] >= self.min_alignment
                reason, back = self.sanction(
                    worst, NEGATIVE_CONTRIBUTION,
                    f"leaving it out lowers the validation loss by {-contributions[worst]:.4g}; "
                    + ("it points with its round (stake returned)" if aligned else
                       f"it points away from its round (cosine {cosines[worst]:.2f})"), aligned)
                self.verdicts[worst] = ItemVerdict(worst, self.by_index[worst].submitter, 0, NEGATIVE_CONTRIBUTION,
                                                   reason, back, self.norms[worst], contributions[worst],
                                                   cosines[worst], **self.diag(worst))
                live.remove(worst)
                continue
            after = self.score_of(live)
            rej = check_subgroups(before.per_group, after.per_group, higher_is_better=self.hib,
                                  tolerance=p.subgroup_tolerance)
            if rej is None:
                break
            if harm_judged and any(self.stepped_ok(m) for m in p.step_search if m != 1.0):
                break  # a shorter (or longer) step of the same updates spares every subgroup and gains
            group = rej.reason.split("'")[1]

            def group_score(i: int) -> float:  # the subgroup's score without update i
                s = self.score_of([j for j in live if j != i]).per_group.get(group, math.nan)
                return s if self.hib else -s

            culprit = max(live, key=lambda i: (group_score(i), -i))  # its removal helps that subgroup most
            aligned = cosines[culprit] >= self.min_alignment  # honest but unhelpful: the stake comes back
            reason, back = self.sanction(
                culprit, SUBGROUP_REGRESSION,
                rej.reason + ("; it points with its round (stake returned)" if aligned else
                              f"; it points away from its round (cosine {cosines[culprit]:.2f})"), aligned)
            self.verdicts[culprit] = ItemVerdict(culprit, self.by_index[culprit].submitter, 0, SUBGROUP_REGRESSION,
                                                 reason, back, self.norms[culprit],
                                                 contributions.get(culprit, math.nan), cosines[culprit],
                                                 **self.diag(culprit))
            live.remove(culprit)

    def pooled_after(self) -> dict[str, MinerEvidence]:
        """Every miner's evidence after this round: an update's harm joins its miner's pool unless it
        was forfeited (judged once); accepted updates and warnings are counted."""
        out = dict(self.pooled)
        for i, z in self.new_harm_z.items():
            v = self.verdicts.get(i)
            if v is None or v.accepted or v.refund:
                miner = self.miner(i)
                prior = out.get(miner, MinerEvidence())
                out[miner] = dataclasses.replace(prior, harm_z=(*prior.harm_z, z))
        for i, v in self.verdicts.items():
            if v.accepted or i in self.warned:
                miner = v.miner.lower()
                prior = out.get(miner, MinerEvidence())
                out[miner] = dataclasses.replace(prior, accepted=prior.accepted + v.accepted,
                                                 warnings=prior.warnings + (i in self.warned))
        for miner, (_, _, kept) in self.retractions.items():
            if miner in self.retracted:
                out[miner] = dataclasses.replace(out[miner], applied_sum=tuple(kept.reshape(-1).tolist()))
        for i, matrix in self.applied.items():
            miner = self.miner(i)
            prior = out.get(miner, MinerEvidence())
            if len(prior.applied_sum) == matrix.numel():
                matrix = torch.tensor(prior.applied_sum, dtype=torch.float64).reshape(matrix.shape) + matrix
            out[miner] = dataclasses.replace(prior, applied_sum=tuple(matrix.reshape(-1).tolist()))
        return out

    @functools.cached_property
    def units(self) -> InputUnits | None:
        """The first layer's input units (the concentration test's), or ``None`` if it has none to test."""
        return input_groups(self.manifest, head=self.policy.concentration_head)

    @functools.cached_property
    def retractions(self) -> dict[str, tuple[list[int], torch.Tensor, torch.Tensor]]:
        """What :attr:`RoundPolicy.retract_convicted` takes back out, per miner with a code-9 forfeit
        (earlier or in this round): its flagged input units whose rows of
        :attr:`MinerEvidence.applied_sum` are not zero, that sum with only those rows, and with them zeroed.
        Read once the concentration stage has named this round's inputs (by :meth:`settle`)."""
        units = self.units
        if not self.policy.retract_convicted or units is None:
            return {}
        rows = group_matrix(self.current_state[units.name], units.axis, units.shape).shape
        out = {}
        for miner, e in sorted(self.pooled.items()):
            if not e.flagged_inputs or len(e.applied_sum) != rows[0] * rows[1]:
                continue
            matrix = torch.tensor(e.applied_sum, dtype=torch.float64).reshape(rows)
            flagged = [j for j in e.flagged_inputs if j < rows[0] and bool(matrix[j].any())]
            if flagged:
                taken = torch.zeros_like(matrix)
                taken[flagged] = matrix[flagged]
                out[miner] = (flagged, taken, matrix - taken)
        return out

    def ungrouped(self, units: InputUnits, matrix: torch.Tensor) -> dict[str, torch.Tensor]:
        """A matrix of ``units``' weight grouped by input unit (:func:`group_matrix`) as a change of the
        whole state: that weight's tensor, zero elsewhere (float64)."""
        weight = self.current_state[units.name]
        where = group_matrix(torch.arange(weight.numel(), dtype=torch.float64).reshape(weight.shape), units.axis,
                             units.shape).long()
        out = {k: torch.zeros(v.shape, dtype=torch.float64) for k, v in self.current_state.items()}
        out[units.name].view(-1)[where.reshape(-1)] = matrix.reshape(-1)
        return out

    def best_step(self, minus: Mapping[str, torch.Tensor] | None
                  ) -> tuple[float, dict[str, torch.Tensor], EvalResult]:
        """The step size whose state (``minus`` taken out) scores best and keeps every subgroup (ties:
        the earlier multiplier); the first multiplier if none keeps them."""
        p, live, before = self.policy, self.live, self.before
        best: tuple[int, float, dict[str, torch.Tensor], EvalResult] | None = None
        for mult in p.step_search:  # deterministic, so audits replay it
            candidate = self.state_of(live, mult, minus)
            result = self.scored(candidate)
            if check_subgroups(before.per_group, result.per_group, higher_is_better=self.hib,
                               tolerance=p.subgroup_tolerance) is not None:
                continue
            fixed = score_to_chain(result.score) if self.hib else -score_to_chain(result.score)
            if best is None or fixed > best[0]:
                best = (fixed, mult, candidate, result)
        if best is None:  # only the first multiplier was checked against the subgroups above
            candidate = self.state_of(live, 1.0, minus)
            best = (0, 1.0, candidate, self.scored(candidate))
        return best[1], best[2], best[3]

    def settle(self) -> RoundDecision:
        """The updates left: the step size (``server_lr`` times each multiplier in ``step_search``, the
        best validation score that keeps every subgroup wins; ties: the earlier multiplier), the
        improvement it must make (2, refunded) and each one's share of the round's pot. The first-layer
        weights of code-9 forfeits' flagged inputs that their miners' earlier accepted updates put in the
        model (:attr:`retractions`) are taken back out when the round still gains and keeps every
        subgroup with them out; else they wait for a round that does."""
        p, live, before, verdicts = self.policy, self.live, self.before, self.verdicts
        in_order = [it.index for it in self.items]
        if not live:
            return RoundDecision([verdicts[i] for i in in_order], before.score, math.nan, None, self.loss_before,
                                 math.nan, dict(before.per_group), evidence=self.pooled_after())
        pending = self.retractions
        if pending and self.units is not None:
            mult, new_state, after = self.best_step(self.ungrouped(self.units, sum(t for _, t, _ in pending.values())))
            gains = check_improvement(before.score, after.score, higher_is_better=self.hib,
                                      min_improvement=p.min_improvement) is None
            if gains and check_subgroups(before.per_group, after.per_group, higher_is_better=self.hib,
                                         tolerance=p.subgroup_tolerance) is None:
                self.retracted = tuple(pending)
        if not self.retracted:  # none pending, or this round's gain cannot carry them yet: they wait
            mult, new_state, after = self.best_step(None)
        loss_after = validation_loss(self.manifest, new_state, self.X, self.y)
        rej = check_improvement(before.score, after.score, higher_is_better=self.hib,
                                min_improvement=p.min_improvement)
        if rej is not None:
            for i in live:
                self.reject(i, NO_IMPROVEMENT, rej.reason, norm=self.norms[i], contribution=self.contributions[i],
                            alignment=self.cosines[i], **self.diag(i))
            return RoundDecision([verdicts[i] for i in in_order], before.score, after.score, None, self.loss_before,
                                 loss_after, dict(before.per_group), dict(after.per_group), self.pooled_after())
        units = self.units if p.retract_convicted else None
        if units is not None and self.current_state[units.name].numel() <= SUM_MAX_ENTRIES:
            for i, w in zip(live, self.weights_of(live, mult)):
                self.applied[i] = w * group_matrix(self.deltas[i][units.name].detach().to(torch.float64), units.axis,
                                                   units.shape)
        shares = shares_bps([self.contributions[i] for i in live], floor=p.share_floor)
        for i, bps in zip(live, shares):
            verdicts[i] = ItemVerdict(i, self.by_index[i].submitter, bps, ACCEPTED, "accepted", False, self.norms[i],
                                      self.contributions[i], self.cosines[i], **self.diag(i))
        return RoundDecision([verdicts[i] for i in in_order], before.score, after.score, new_state, self.loss_before,
                             loss_after, dict(before.per_group), dict(after.per_group), self.pooled_after(),
                             self.retracted)
