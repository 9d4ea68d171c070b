"""mine.policy rounds: the pure arithmetic (outliers, clipping, aggregation, leave-one-out, shares) at its
boundaries, then RoundPolicy on digits against honest, boosted, label-flipped and copied updates."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from mine import attacks as A
from mine import datasets as D
from mine import model as M
from mine import policy as P
from mine import round_policy
from mine.errors import ValidationError
from mine.train import train
from tests.mine.fixtures_digits import digits_policy_setting

# --------------------------------------------------------------------------- pure arithmetic


@pytest.mark.parametrize("contributions", [
    [0.5, 0.3, 0.2], [1.0], [0.0, 0.0, 0.0], [-1.0, 2.0, 0.0, 1e-9], [1e-12] * 7, [3.0] * 32, [math.nan, 1.0],
])
def test_shares_sum_to_10000_and_every_one_gets_something(contributions: list[float]) -> None:
    shares = P.shares_bps(contributions, floor=0.3)
    assert sum(shares) == 10_000
    assert len(shares) == len(contributions) and min(shares) >= 1


def test_shares_follow_contributions_above_the_floor() -> None:
    shares = P.shares_bps([3.0, 1.0, 0.0, -5.0], floor=0.2)
    # floor: 0.2 / 3 each for the three not negative; the rest 80 % split 3:1 between the positive
    # two; the negative one only gets the 1 bp every accepted update has
    assert shares == [6666, 2666, 667, 1]
    assert P.shares_bps([1.0, -1.0], floor=0.3) == [9999, 1]
    assert P.shares_bps([2.0, 2.0], floor=0.0) == [5000, 5000]
    assert P.shares_bps([1.0, 0.0], floor=0.0) == [9999, 1]  # one bp reserved for every accepted update
    assert P.shares_bps([1.0, 1.0, 1.0], floor=0.5) == [3334, 3333, 3333]  # largest remainder, ties to the first
    assert P.shares_bps([], floor=0.3) == []
    with pytest.raises(ValidationError, match="floor"):
        P.shares_bps([1.0], floor=1.5)


def test_round_outliers_have_a_reference_from_the_first_round() -> None:
    # no history at all: the round's own median is the reference (a boosted update stands out)
    assert P.round_outliers([1.0, 1.1, 0.9, 20.0], [], factor=4, min_history=3) == [False, False, False, True]
    # median 1, MAD 0.1 -> spread max(0.148, 0.25) = 0.25; limit 1 + 4 * 0.25 = 2
    assert P.round_outliers([1.0, 0.9, 1.1, 1.0, 2.0], [], factor=4, min_history=3)[4] is False
    assert P.round_outliers([1.0, 0.9, 1.1, 1.0, 2.0 + 1e-9], [], factor=4, min_history=3)[4] is True
    # a round of boosted updates is still caught by enough history
    assert P.round_outliers([30.0, 31.0], [1.0, 1.2, 0.9], factor=4, min_history=3) == [True, True]
    assert P.round_outliers([30.0, 31.0], [1.0, 1.2], factor=4, min_history=3) == [False, False]
    assert P.round_outliers([math.nan, 1.0], [], factor=4, min_history=3) == [True, False]
    with pytest.raises(ValidationError, match="factor"):
        P.round_outliers([1.0], [], factor=0, min_history=1)


def test_clipping_and_aggregation() -> None:
    assert P.clip_scales([1.0, 4.0, 0.0], 2.0) == [1.0, 0.5, 1.0]
    assert P.clip_scales([1.0, 4.0], None) == [1.0, 1.0]
    a = {"w": torch.tensor([1.0, 2.0]), "b": torch.tensor([4.0])}
    b = {"w": torch.tensor([3.0, 0.0]), "b": torch.tensor([-4.0])}
    agg = P.aggregate([a, b], [0.5, 0.25])
    assert agg["w"].dtype == torch.float64
    assert agg["w"].tolist() == [1.25, 1.0] and agg["b"].tolist() == [1.0]
    with pytest.raises(ValidationError):
        P.aggregate([a], [0.5, 0.5])


def test_loo_contributions_and_alignment() -> None:
    assert P.loo_contributions(1.0, [1.5, 0.75]) == [0.5, -0.25]
    x = {"w": torch.tensor([1.0, 0.0])}
    y = {"w": torch.tensor([1.0, 0.1])}
    y2 = {"w": torch.tensor([0.9, 0.0])}
    z = {"w": torch.tensor([-1.0, 0.0])}
    cos = P.alignments([x, y, y2, z], [1.0, 1.0, 1.0, 1.0])
    assert cos[3] < 0 < cos[0]
    assert P.alignments([x], [1.0]) == [0.0]


def test_origin_and_epsilon_checks() -> None:
    meta = {"miner": "0xAbC", "bounty": "3", "base_version": "2"}
    assert P.check_origin(meta, submitter="0xabc", bounty_id=3, base_version=2) is None
    assert P.check_origin(meta, submitter="0xdef", bounty_id=3, base_version=2).code == 6
    assert P.check_origin(meta, submitter="0xabc", bounty_id=4, base_version=2).code == 6
    assert P.check_origin(meta, submitter="0xabc", bounty_id=3, base_version=1).code == 6
    assert P.check_origin({}, submitter="0xabc", bounty_id=3, base_version=2).code == 6
    # code 7 (the accountant's check, mine.policy.check_epsilon): no cap passes; a cap needs a DP record
    assert P.check_epsilon("off", max_epsilon=None) is None
    assert P.check_epsilon("off", max_epsilon=8.0).code == 7
    assert P.check_epsilon(None, max_epsilon=8.0).code == 7


def test_round_policy_settings_are_checked() -> None:
    assert P.make_policy("round").settings()["policy"] == "round"
    for bad in ({"server_lr": 0.0}, {"share_floor": 2.0}, {"step_search": []}, {"max_epsilon": -1.0},
                {"min_alignment": 3.0}, {"harm_factor": 0.0}, {"collusion_factor": -1.0},
                {"min_similarity": 2.0}):
        with pytest.raises(ValidationError):
            P.RoundPolicy(**bad)


def test_noise_alignment_is_three_sigmas_of_a_random_direction() -> None:
    assert P.noise_alignment(2410) == pytest.approx(-3 / math.sqrt(2410))  # digits MLP: about -0.061
    assert P.noise_alignment(100, sigmas=2.0) == pytest.approx(-0.2)
    with pytest.raises(ValidationError):
        P.noise_alignment(0)
    # two random directions in d dimensions: cosines within the threshold nearly always
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(200, 2410, generator=g), torch.randn(200, 2410, generator=g)
    cos = torch.nn.functional.cosine_similarity(a, b, dim=1)
    assert float((cos < P.noise_alignment(2410)).float().mean()) < 0.02


def test_standalone_harm_flags_only_what_hurts_beyond_the_round_noise() -> None:
    # honest DP updates scatter around the median; two label flips raise the loss on their own
    harms = [-0.42, -0.74, -0.33, -0.55, -0.44, 2.07, -0.98, 2.29]
    assert P.standalone_harm(harms, factor=4.0) == [False] * 5 + [True, False, True]
    # a late round: every update hurts a little alone (noise), none beyond the noise level
    assert not any(P.standalone_harm([0.40, 0.24, 0.48, 0.05, 0.10, -0.09], factor=4.0))
    # a loss that improves is never harm, however far from the median
    assert P.standalone_harm([1.0, 1.1, 0.9, 0.95, -5.0], factor=4.0) == [False] * 5
    # too few to know the noise: four honest updates of a converged round, one from a skewed shard
    assert P.standalone_harm([0.076, 0.058, 0.052, 0.196], factor=4.0) == [False] * 4
    assert P.standalone_harm([math.nan, 0.1], factor=4.0) == [True, False]
    with pytest.raises(ValidationError):
        P.standalone_harm([0.1] * 3, factor=0.0)


def test_standalone_harm_is_stricter_for_a_miner_already_forfeited() -> None:
    # a weak label flip (0.45) next to a strong one (2.16) stays inside 4 spreads of the round...
    harms = [-0.15, -0.10, -0.02, 0.01, 0.08, 0.12, 2.16, 0.45]
    assert P.standalone_harm(harms, factor=4.0) == [False] * 6 + [True, False]
    # ...but not inside 2, the factor for a miner whose earlier update was forfeited; the same
    # factor for an honest miner's 0.12 flags nothing
    strict = [4.0] * 7 + [2.0]
    assert P.standalone_harm(harms, factor=strict) == [False] * 6 + [True, True]
    assert P.standalone_harm(harms, factor=[4.0] * 5 + [2.0, 4.0, 4.0]) == [False] * 6 + [True, False]
    with pytest.raises(ValidationError):
        P.standalone_harm(harms, factor=[4.0] * 3)


def test_pairwise_similarity_and_collusion() -> None:
    g = torch.Generator().manual_seed(1)
    common = torch.randn(500, generator=g)
    honest = [{"w": torch.randn(500, generator=g)} for _ in range(5)]
    sybils = [{"w": common + 0.3 * torch.randn(500, generator=g)} for _ in range(3)]
    sims = P.pairwise_similarity(honest + sybils)
    assert all(s < 0.3 for s in sims[:5]) and all(s > 0.8 for s in sims[5:])
    assert P.similarity_outliers(sims, factor=3.0, min_similarity=0.5) == [False] * 5 + [True] * 3
    assert P.pairwise_similarity([{"w": torch.ones(3)}]) == [0.0]
    assert P.similarity_outliers([0.9, 0.9], factor=3.0, min_similarity=0.5) == [False, False]


def test_precision_weights_are_inverse_variance_with_mean_one() -> None:
    w = P.precision_weights([1.0, 2.0, 4.0])
    assert sum(w) == pytest.approx(3.0)
    assert w[0] / w[1] == pytest.approx(4.0) and w[1] / w[2] == pytest.approx(4.0)
    assert P.precision_weights([0.0, 0.0]) == [1.0, 1.0]


# --------------------------------------------------------------------------- a round on digits


@pytest.fixture(scope="module")
def world():
    s, manifest, shards = digits_policy_setting()
    state = M.model_state(M.build_model(manifest, seed=0))

    def update(X, y, seed, miner, *, transform=None, version=0):
        model = M.build_model(manifest)
        model.load_state_dict(state)
        train(model, X, y, manifest, seed=seed)
        trained = M.model_state(model)
        if transform is not None:
            delta = transform({k: trained[k] - state[k] for k in state})
            trained = {k: state[k] + delta[k] for k in state}
        return M.make_update(state, trained, {"bounty": "1", "base_version": str(version), "miner": miner})

    return dict(manifest=manifest, split=s, shards=shards, state=state, update=update)


def _items(world, specs):
    s, shards, upd = world["split"], world["shards"], world["update"]
    out = []
    for i, (kind, miner) in enumerate(specs):
        X, y = s.X_train[shards[i % len(shards)]], s.y_train[shards[i % len(shards)]]
        if kind == "flip":
            data = upd(X, A.label_flip(y, num_classes=10, seed=i), i, miner)
        elif kind == "boost":
            data = upd(X, y, i, miner, transform=lambda d: A.scale_update(d, 20.0))
        elif kind == "copy":
            data = out[0].update  # someone else's update, submitted under my address
        else:
            data = upd(X, y, i, miner)
        out.append(P.RoundItem(i, f"0x{i:040x}" if kind == "copy" else miner, 0, data))
    return out


def test_round_pays_honest_and_rejects_boosted_flipped_and_copied(world) -> None:
    specs = [("honest", f"0x{i:040x}") for i in range(4)] + [("boost", "0x" + "b" * 40), ("flip", "0x" + "f" * 40),
                                                              ("copy", "")]
    items = _items(world, specs)
    d = P.RoundPolicy().judge(world["manifest"], world["state"], items, (world["split"].X_val, world["split"].y_val),
                              bounty_id=1, current_version=0)
    by = {v.index: v for v in d.verdicts}
    # honest updates are never forfeited: accepted, or (adding nothing to the round's mean) refunded
    assert all(by[i].accepted or by[i].refund for i in range(4)), [by[i] for i in range(4)]
    assert sum(by[i].accepted for i in range(4)) >= 2
    assert sum(v.share_bps for v in d.accepted) == 10_000
    assert (by[4].reason_code, by[4].refund) == (4, False)       # boosted: outlier against its round
    assert by[5].reason_code in (4, 8) and not by[5].accepted     # label flip: outlier or negative value
    assert (by[6].reason_code, by[6].refund) == (6, False)       # copied: the update names another miner
    assert d.new_state is not None and d.score_after > d.score_before


def test_stale_and_unreadable_items(world) -> None:
    items = _items(world, [("honest", "0x" + "1" * 40), ("honest", "0x" + "2" * 40)])
    items.append(P.RoundItem(7, "0x" + "3" * 40, 0, None, "did not open"))
    d = P.RoundPolicy().judge(world["manifest"], world["state"], items, (world["split"].X_val, world["split"].y_val),
                              bounty_id=1, current_version=1)
    codes = [(v.reason_code, v.refund) for v in d.verdicts]
    # trained from version 0 while the model is at version 1: stale, stake returned
    assert codes == [(2, True), (2, True), (5, False)]
    assert d.new_state is None


def test_round_judgement_is_deterministic(world) -> None:
    items = _items(world, [("honest", f"0x{i:040x}") for i in range(3)])
    val = (world["split"].X_val, world["split"].y_val)
    a = P.RoundPolicy().judge(world["manifest"], world["state"], items, val, bounty_id=1, current_version=0)
    b = P.RoundPolicy().judge(world["manifest"], world["state"], items, val, bounty_id=1, current_version=0)
    assert [v.share_bps for v in a.verdicts] == [v.share_bps for v in b.verdicts]
    assert M.state_to_bytes(a.new_state) == M.state_to_bytes(b.new_state)


@pytest.fixture(scope="module")
def noisy_round(world):
    # DP-like updates: each honest delta plus Gaussian noise of twice its norm, so cosines with the
    # round are small and some leave-one-out values negative; none points away beyond -3/sqrt(d)
    s, shards, upd = world["split"], world["shards"], world["update"]

    def noisy(i: int):
        return lambda d: {k: d[k] + v for k, v in A.noise_update(d, 2.0, seed=100 + i).items()}

    items = [P.RoundItem(i, f"0x{i + 1:040x}", 0, upd(s.X_train[shards[i]], s.y_train[shards[i]], i,
                                                       f"0x{i + 1:040x}", transform=noisy(i))) for i in range(5)]
    X, y = s.X_train[shards[5]], A.label_flip(s.y_train[shards[5]], num_classes=10, seed=5)
    items.append(P.RoundItem(5, "0x" + "f" * 40, 0, upd(X, y, 5, "0x" + "f" * 40)))
    return items


def test_noisy_honest_updates_stay_in_the_mean_and_a_flip_is_forfeited(world, noisy_round) -> None:
    s, items = world["split"], noisy_round
    val = (s.X_val, s.y_val)
    d = P.RoundPolicy().judge(world["manifest"], world["state"], items, val, bounty_id=1, current_version=0)
    by = {v.index: v for v in d.verdicts}
    assert all(by[i].accepted for i in range(5)), [by[i] for i in range(5)]
    assert (by[5].reason_code, by[5].refund) == (8, False) and by[5].harm > 0
    assert sum(v.share_bps for v in d.accepted) == 10_000
    # the old rule (drop every negative leave-one-out value) keeps fewer of them
    strict = P.RoundPolicy(keep_aligned=False).judge(world["manifest"], world["state"], items, val, bounty_id=1,
                                                     current_version=0)
    assert len(strict.accepted) <= len(d.accepted)


def test_a_shorter_step_that_spares_every_subgroup_keeps_the_round_whole(world) -> None:
    """From a partly trained model, skewed honest shards' full step costs some class a little accuracy;
    a quarter step does not and still gains. The subgroup rule then keeps every update (without the
    step search it removed them one by one, and the round made no version)."""
    s, manifest = world["split"], world["manifest"]
    net = M.build_model(manifest, seed=0)
    train(net, s.X_train[:300], s.y_train[:300], dataclasses.replace(manifest, training={**manifest.training,
                                                                                         "epochs": 1}), seed=0)
    state = M.model_state(net)
    shards = D.dirichlet_shards(s.y_train, 6, alpha=0.5, seed=3, min_size=30)
    items = []
    for i, rows in enumerate(shards):
        model = M.build_model(manifest)
        model.load_state_dict(state)
        train(model, s.X_train[rows], s.y_train[rows], manifest, seed=i)
        delta = {k: v - state[k] for k, v in M.model_state(model).items()}
        delta = {k: delta[k] + v for k, v in A.noise_update(delta, 1.0, seed=100 + i).items()}
        miner = f"0x{i + 1:040x}"
        items.append(P.RoundItem(i, miner, 0, M.make_update(state, {k: state[k] + delta[k] for k in state},
                                                            {"bounty": "1", "base_version": "0", "miner": miner})))

    # the classes as an owner's group column: each group's score is its accuracy (a class's own score
    # is its F1, which these full steps do not lower)
    validation = (s.X_val, s.y_val, s.y_val)

    def judge(**settings):
        return P.RoundPolicy(subgroup_tolerance=0.0, step_search=(1.0, 0.25), **settings).judge(
            manifest, state, items, validation, bounty_id=1, current_version=0)

    off = judge(subgroup_step_search=False)
    assert off.new_state is None
    assert [(v.reason_code, v.refund) for v in off.verdicts] == [(P.SUBGROUP_REGRESSION, True)] * 6
    on = judge()
    assert len(on.accepted) == 6 and on.new_state is not None and on.score_after > on.score_before
    assert P.check_subgroups(on.per_group_before, on.per_group_after, higher_is_better=True, tolerance=0.0) is None
    assert P.RoundPolicy.ADDED_LATER["subgroup_step_search"] is False
    # a round too small for the harm rule's noise level is not kept whole by another step: alone, a
    # harmful update could pass at whichever step happens to gain
    small = items[1:P.MIN_HARM_SAMPLES]  # four: a shorter step would keep these whole
    few = [P.RoundPolicy(subgroup_tolerance=0.0, step_search=(1.0, 0.25), subgroup_step_search=flag).judge(
        manifest, state, small, validation, bounty_id=1, current_version=0) for flag in (False, True)]
    assert any(v.reason_code == P.SUBGROUP_REGRESSION for v in few[0].verdicts)
    assert [(v.reason_code, v.share_bps) for v in few[0].verdicts] == [(v.reason_code, v.share_bps) for v in few[1].verdicts]


def test_a_miner_in_good_standing_is_warned_once_before_a_forfeit(world, noisy_round) -> None:
    """A harmful update from a miner with accepted work in the bounty and no forfeit is rejected with
    its stake back the first time (an honest skewed shard's bad luck); the warning is in its evidence,
    so the next one is forfeited, as is one from a miner without accepted work or already forfeited."""
    s, items = world["split"], noisy_round
    flipper = items[5].submitter.lower()

    def judge(evidence=None, suspects=(), **settings):
        d = P.RoundPolicy(**settings).judge(world["manifest"], world["state"], items, (s.X_val, s.y_val),
                                            bounty_id=1, current_version=0, evidence=evidence, suspects=suspects)
        return d, {v.index: v for v in d.verdicts}[5]

    standing = {flipper: P.MinerEvidence(accepted=2)}
    d, v = judge(standing)
    assert (v.reason_code, v.refund, v.accepted) == (P.NEGATIVE_CONTRIBUTION, True, False), v
    assert "a warning, stake returned: its 2 earlier accepted update(s)" in v.reason
    assert d.evidence[flipper].warnings == 1 and d.evidence[flipper].accepted == 2
    # the honest miners' acceptances are counted for their next rounds
    assert all(d.evidence[it.submitter.lower()].accepted == 1 for it in items[:5])
    # the warning is used up; no accepted work; already forfeited on chain; the setting off: forfeited
    for evidence, suspects, settings in (({flipper: d.evidence[flipper]}, (), {}), (None, (), {}),
                                         (standing, {flipper: 1}, {}), (standing, (), {"good_standing_warning": False})):
        d2, v2 = judge(evidence, suspects, **settings)
        assert (v2.reason_code, v2.refund) == (P.NEGATIVE_CONTRIBUTION, False), (evidence, suspects, settings)
        assert "warning" not in v2.reason
        assert d2.evidence.get(flipper, P.MinerEvidence()).warnings == (evidence or {}).get(
            flipper, P.MinerEvidence()).warnings
    assert P.RoundPolicy.ADDED_LATER["good_standing_warning"] is False


# --------------------------------------------------------------------------- concentration (backdoors)


def _dp_like(rows: int, width: int, *, sigma: float, seed: int, shares: list[float] | None = None,
             signal: float = 0.0) -> torch.Tensor:
    """A first layer grouped by input (rows) of an update: Gaussian DP noise plus a diffuse signal of
    total energy ``signal`` spread over the inputs in proportion to ``shares``."""
    g = torch.Generator().manual_seed(seed)
    m = sigma * torch.randn(rows, width, generator=g, dtype=torch.float64)
    if shares is not None and signal > 0:
        direction = torch.randn(width, generator=g, dtype=torch.float64)
        direction /= direction.norm()
        for j, share in enumerate(shares):
            m[j] += math.sqrt(signal * share) * direction
    return m


def test_noise_variance_is_the_noise_not_the_signal() -> None:
    for seed in range(3):
        noise = _dp_like(64, 32, sigma=0.1, seed=seed)
        assert P.noise_variance(noise) == pytest.approx(0.01, rel=0.12)
        # a strong low-rank signal (10x the noise energy) barely moves the estimate
        g = torch.Generator().manual_seed(seed + 10)
        signal = torch.outer(torch.randn(64, generator=g, dtype=torch.float64),
                             torch.randn(32, generator=g, dtype=torch.float64))
        signal *= math.sqrt(10 * float(noise.square().sum())) / signal.norm()
        assert P.noise_variance(noise + signal) == pytest.approx(0.01, rel=0.2)
    with pytest.raises(ValidationError):
        P.noise_variance(torch.ones(1, 5))


def test_a_concentrated_input_is_flagged_and_dp_noise_is_not() -> None:
    rows, width = 64, 32
    shares = [1.0 / rows] * rows  # clean data of any class spreads its gradient over the inputs
    allowed = [2 * s for s in shares]
    flagged_honest = 0
    for seed in range(20):
        # isotropic DP noise, and noise plus a signal that follows the clean shares: never flagged
        for m in (_dp_like(rows, width, sigma=0.1, seed=seed),
                  _dp_like(rows, width, sigma=0.1, seed=seed, shares=shares, signal=3.0)):
            pv = P.concentration_pvalues(m, allowed)
            assert all(0.0 <= p <= 1.0 for p in pv)
            flagged_honest += P.concentrated(pv, alpha=1e-3) is not None
        # a backdoor: the same update with a signal of norm 1 on input 1 (a trigger pixel)
        m = _dp_like(rows, width, sigma=0.1, seed=seed, shares=shares, signal=3.0)
        g = torch.Generator().manual_seed(100 + seed)
        trigger = torch.randn(width, generator=g, dtype=torch.float64)
        m[1] += trigger / trigger.norm()
        pv = P.concentration_pvalues(m, allowed)
        assert P.concentrated(pv, alpha=1e-3) == 1, pv[1]
        assert P.signal_shares(m)[1] > 0.15  # 1 of about 4 units of signal energy
    assert flagged_honest == 0
    # an input the clean data uses that much is allowed that much
    m[1] -= trigger / trigger.norm()
    m[1] += trigger / trigger.norm() * 0.5
    assert P.concentrated(P.concentration_pvalues(m, [0.5] * rows), alpha=1e-3) is None
    assert P.concentrated([], alpha=1e-3) is None
    assert P.concentrated([0.5, 1e-3], alpha=1e-3) is None  # Bonferroni: the limit is 1e-3 / 2 inputs
    assert P.concentrated([0.5, 1e-4, 1e-5], alpha=1e-3) == 2  # the smallest of those below it
    with pytest.raises(ValidationError):
        P.concentration_pvalues(m, [0.1])


def test_input_groups_of_the_standard_models() -> None:
    mlp = M.default_manifest("digits")
    name, axis, names, shape = P.input_groups(mlp)
    assert (name, axis, names, shape) == ("0.weight", 1, list(mlp.features), None)
    assert P.group_matrix(torch.zeros(32, 64), axis).shape == (64, 32)
    # one image channel: the kernel is shared by every pixel, so the units are the head's weights
    # from each position of the 4x4 feature map (16 channels) to each of the 10 outputs
    cnn = P.input_groups(M.default_manifest("digits", "cnn"))
    assert (cnn.name, cnn.axis, cnn.shape) == ("6.weight", (0, 2), (10, 16, 16))
    assert len(cnn.names) == 160 and cnn.names[1] == "output 0 at position (0, 1)"
    head = torch.arange(10 * 256, dtype=torch.float64).reshape(10, 256)  # Flatten order: channel, then place
    g = P.group_matrix(head, cnn.axis, cnn.shape)
    assert g.shape == (160, 16) and g[16 + 5].tolist() == [head[1, c * 16 + 5].item() for c in range(16)]
    assert P.input_groups(M.default_manifest("digits", "cnn"), head=False) is None
    assert P.input_groups(M.default_manifest("diabetes")) is None        # linear model: one weight per input
    assert P.input_groups(M.default_manifest("breast_cancer"))[:2] == ("0.weight", 1)


def test_clean_input_shares_are_zero_on_constant_inputs(world) -> None:
    manifest, s = world["manifest"], world["split"]
    shares = P.clean_input_shares(manifest, world["state"], s.X_val, s.y_val, None, "0.weight", 1)
    assert len(shares) == 64 and all(0.0 <= x <= 1.0 for x in shares)
    # an input that is 0 on every (normalised) validation row gets no gradient: no share
    zero = (M.prepare_inputs(manifest, s.X_val) == 0).all(dim=0).numpy()
    assert zero.any() and all(shares[j] == 0.0 for j in np.flatnonzero(zero))
    # the owner's group column adds its subgroups: every class's share is still covered
    groups = (s.y_val % 2).astype(np.int64)
    more = P.clean_input_shares(manifest, world["state"], s.X_val, s.y_val, groups, "0.weight", 1)
    assert all(b >= a - 1e-12 for a, b in zip(shares, more))
    # the bootstrap bound: above the class means where clean data uses an input, still 0 where it
    # never does, the same on every call (an audit replays it)
    bound = P.clean_input_shares(manifest, world["state"], s.X_val, s.y_val, None, "0.weight", 1, quantile=0.9)
    assert bound == P.clean_input_shares(manifest, world["state"], s.X_val, s.y_val, None, "0.weight", 1, quantile=0.9)
    assert all(bound[j] == 0.0 for j in np.flatnonzero(zero))
    used = [j for j in range(64) if shares[j] > 0]
    assert sum(bound[j] > shares[j] for j in used) > 0.9 * len(used)
    assert sum(bound) > 1.2 * sum(shares)
    low = P.clean_input_shares(manifest, world["state"], s.X_val, s.y_val, None, "0.weight", 1, quantile=0.5)
    assert sum(low) < sum(bound)
    for q in (0.0, 1.0, -0.5):
        with pytest.raises(ValidationError):
            P.clean_input_shares(manifest, world["state"], s.X_val, s.y_val, None, "0.weight", 1, quantile=q)
    with pytest.raises(ValidationError):
        P.RoundPolicy(share_quantile=1.5)


@pytest.fixture(scope="module")
def dp_round():
    """Six DP-SGD updates (ε 8) of one digits version; miner 5 stamps a trigger on half its rows."""
    from mine.dp import default_settings, examples_bucket, train_dp

    ds = D.load("digits")
    s = D.train_validation_split(ds.X, ds.y, validation_fraction=0.25, seed=5)
    manifest = M.with_normalization(M.default_manifest("digits"), s.X_val)
    manifest = dataclasses.replace(manifest, training={**manifest.training, "dp": {"target_epsilon": 8.0}})
    shards = D.dirichlet_shards(s.y_train, 6, alpha=1.0, seed=5, min_size=10)
    state = M.model_state(M.build_model(manifest, seed=5))
    trigger = A.make_trigger(s.X_train)
    items = []
    for i in range(6):
        X, y = s.X_train[shards[i]], s.y_train[shards[i]]
        if i == 5:
            X, y = A.backdoor(X, y, trigger=trigger, target_label=0, fraction=0.5, seed=i)
        model = M.build_model(manifest)
        model.load_state_dict(state)
        out = train_dp(model, X.astype(np.float32), y, manifest, default_settings(manifest), seed=i, noise_seed=i)
        miner = f"0x{i + 1:040x}"
        data = M.make_update(state, M.model_state(model), {"bounty": "1", "base_version": "0", "miner": miner,
                                                           "dp": out.record.to_json()})
        items.append(P.RoundItem(i, miner, 0, data))
    def tiny(rows: int, index: int) -> P.RoundItem:  # an honest update from only `rows` rows
        X, y = s.X_train[shards[0]][:rows], s.y_train[shards[0]][:rows]
        model = M.build_model(manifest)
        model.load_state_dict(state)
        out = train_dp(model, X.astype(np.float32), y, manifest, default_settings(manifest), seed=index,
                       noise_seed=index)
        miner = f"0x{index + 1:040x}"
        return P.RoundItem(index, miner, 0, M.make_update(state, M.model_state(model), {
            "bounty": "1", "base_version": "0", "miner": miner, "dp": out.record.to_json(),
            "examples_bucket": str(examples_bucket(rows))}))

    return dict(manifest=manifest, state=state, items=items, val=(s.X_val, s.y_val), tiny=tiny,
                rows=[len(shards[i]) for i in range(6)], train=(s.X_train, s.y_train))


def _judge(r, policy=None, **kw):
    return (policy or P.RoundPolicy()).judge(r["manifest"], r["state"], r["items"], r["val"], bounty_id=1,
                                             current_version=0, **kw)


def test_a_dp_backdoor_is_forfeited_and_dp_honest_updates_are_paid(dp_round) -> None:
    d = _judge(dp_round)
    by = {v.index: v for v in d.verdicts}
    assert all(by[i].accepted for i in range(5)), [by[i] for i in range(5)]
    assert (by[5].reason_code, by[5].refund) == (P.CONCENTRATED, False), by[5]
    assert "pixel_0_1" in by[5].reason
    # the code-9 forfeit takes back the miner's vesting rewards; nothing else does
    assert by[5].clawback and not any(by[i].clawback for i in range(5))
    assert [v.clawback for v in _judge(dp_round, P.RoundPolicy(clawback_concentrated=False)).verdicts] == [False] * 6
    assert "vesting rewards in this bounty are burned" in by[5].reason
    # the clawback needs the stronger evidence of clawback_alpha; the forfeit itself does not
    weak = {v.index: v for v in _judge(dp_round, P.RoundPolicy(clawback_alpha=1e-300)).verdicts}
    assert (weak[5].reason_code, weak[5].refund, weak[5].clawback) == (P.CONCENTRATED, False, False)
    assert "burned" not in weak[5].reason
    assert {v.index: v for v in _judge(dp_round, P.RoundPolicy(clawback_alpha=None)).verdicts}[5].clawback
    with pytest.raises(ValidationError, match="clawback_alpha"):
        P.RoundPolicy(clawback_alpha=0.01)  # above concentration_alpha
    off = _judge(dp_round, P.RoundPolicy(concentration_alpha=None))
    assert [v for v in off.verdicts if v.index == 5][0].reason_code != P.CONCENTRATED
    # every tested update starts its miner's evidence: one test, its Fisher terms per input
    pixel = list(dp_round["manifest"].features).index("pixel_0_1")
    for i, item in enumerate(dp_round["items"]):
        e = d.evidence[item.submitter.lower()]
        assert e.concentration_tests == 1 and len(e.concentration_terms) == 64
    terms = d.evidence[dp_round["items"][5].submitter.lower()].concentration_terms
    assert max(range(64), key=lambda j: terms[j]) == pixel
    # the forfeit names the trigger's input in its miner's evidence; nobody else's is flagged
    assert d.evidence[dp_round["items"][5].submitter.lower()].flagged_inputs == (pixel,)
    assert all(not d.evidence[it.submitter.lower()].flagged_inputs for it in dp_round["items"][:5])


def test_a_backdoor_accepted_before_its_miner_was_caught_is_taken_back_out_of_the_model(dp_round) -> None:
    """Round 1 without the concentration test keeps the backdoor; when the same miner's update is
    forfeited in round 2 (code 9, naming the trigger's input), the new version takes the first-layer
    weights its round-1 update put on that input back out."""
    from mine.concentration import group_matrix, input_groups

    manifest, state = dp_round["manifest"], dp_round["state"]
    units = input_groups(manifest)
    first = _judge(dp_round, P.RoundPolicy(concentration_alpha=None))
    assert 5 in {v.index for v in first.accepted}, first.verdicts
    # each accepted miner's first layer as it went into the model, grouped by input: they add up to
    # the version's change of that layer
    applied = {m: torch.tensor(e.applied_sum, dtype=torch.float64) for m, e in first.evidence.items() if e.applied_sum}
    assert set(applied) == {v.miner.lower() for v in first.accepted}
    change = group_matrix((first.new_state[units.name] - state[units.name]).to(torch.float64), units.axis, units.shape)
    assert torch.allclose(sum(applied.values()).reshape(change.shape), change, atol=1e-6)
    bad = dp_round["items"][5].submitter.lower()

    one_step = P.RoundPolicy(step_search=(1.0,))  # the same step with and without the retraction
    second = _judge(dp_round, one_step, evidence=first.evidence)
    v5 = {v.index: v for v in second.verdicts}[5]
    assert v5.reason_code == P.CONCENTRATED and "pixel_0_1" in v5.reason, v5
    assert second.retracted == (bad,) and second.new_state is not None
    assert second.score_after > second.score_before  # the version still gains
    assert _judge(dp_round, evidence=first.evidence).retracted == (bad,)  # with the default step search too
    kept = _judge(dp_round, P.RoundPolicy(step_search=(1.0,), retract_convicted=False), evidence=first.evidence)
    assert kept.retracted == () and [v.share_bps for v in kept.verdicts] == [v.share_bps for v in second.verdicts]
    # only the flagged input's weights differ, by what the miner's round-1 update put there
    (flagged,) = second.evidence[bad].flagged_inputs
    assert manifest.features[flagged] == "pixel_0_1"
    for k in state:
        if k != units.name:
            assert torch.equal(second.new_state[k], kept.new_state[k]), k
    taken = group_matrix((kept.new_state[units.name] - second.new_state[units.name]).to(torch.float64), units.axis,
                         units.shape)
    before = applied[bad].reshape(change.shape)
    assert torch.allclose(taken[flagged], before[flagged], atol=1e-6) and before[flagged].abs().sum() > 0
    assert torch.allclose(torch.cat([taken[:flagged], taken[flagged + 1:]]), torch.zeros(1, dtype=torch.float64),
                          atol=1e-6)
    # the evidence zeroes what was taken out, keeps the rest, and survives the owner's file
    after = torch.tensor(second.evidence[bad].applied_sum, dtype=torch.float64).reshape(change.shape)
    assert not after[flagged].any() and torch.equal(torch.cat([after[:flagged], after[flagged + 1:]]),
                                                    torch.cat([before[:flagged], before[flagged + 1:]]))
    assert P.evidence_from_json(json.loads(json.dumps(P.evidence_to_json(second.evidence)))) == second.evidence
    assert _judge(dp_round, evidence=second.evidence).retracted == ()  # taken out once

    # a retraction the round's gain cannot carry waits for a round that can
    huge = before.clone()
    huge[flagged] *= 1000
    heavy = {**first.evidence, bad: dataclasses.replace(first.evidence[bad], applied_sum=tuple(huge.reshape(-1).tolist()))}
    waits = _judge(dp_round, evidence=heavy)
    assert waits.retracted == () and waits.new_state is not None
    assert waits.evidence[bad].applied_sum == heavy[bad].applied_sum
    # the setting off (bounties posted before it): nothing is summed
    assert all(e.applied_sum == () for e in _judge(dp_round, P.RoundPolicy(
        concentration_alpha=None, retract_convicted=False)).evidence.values())
    assert P.RoundPolicy.ADDED_LATER["retract_convicted"] is False


def test_an_input_another_miners_forfeit_named_is_tested_without_the_bonferroni_over_inputs(dp_round) -> None:
    """A colluder with the same trigger: once one miner was forfeited for an input, everyone else's
    later updates are tested on that input at the limit divided by the flagged inputs, not by all 64."""
    r = dp_round
    pixel = list(r["manifest"].features).index("pixel_0_1")
    name, axis, _names, shape = P.input_groups(r["manifest"])
    allowed, _ = P.clean_input_bounds(r["manifest"], r["state"], r["val"][0], r["val"][1], None, name, axis, shape,
                                      quantile=0.9)
    tensors, _meta = M.read_update(r["manifest"], r["items"][5].update)
    pvalues = P.concentration_pvalues(P.group_matrix(tensors[name], axis, shape), allowed)
    assert min(range(64), key=lambda j: pvalues[j]) == pixel
    # a limit this update's p meets only if it is not divided by the 64 inputs (alone + guided: 2 tests)
    policy = P.RoundPolicy(concentration_alpha=8 * pvalues[pixel], clawback_alpha=None)
    other = {"0x" + "e" * 40: P.MinerEvidence(concentration_tests=1, flagged_inputs=(pixel,))}
    guided = {v.index: v for v in _judge(r, policy, evidence=other).verdicts}
    assert (guided[5].reason_code, guided[5].refund) == (P.CONCENTRATED, False), guided[5]
    assert "another miner's update was forfeited for this input" in guided[5].reason and "/ 1 inputs" in guided[5].reason
    assert all(guided[i].reason_code != P.CONCENTRATED for i in range(5))
    # without that evidence, or with the setting off (bounties posted before it), the same update passes it
    off = dataclasses.replace(policy, guided_concentration=False)
    for pol, evidence in ((policy, {}), (off, other)):
        plain = _judge(r, pol, evidence=evidence)
        assert {v.index: v for v in plain.verdicts}[5].reason_code != P.CONCENTRATED
    # its own earlier flag does not guide its own test (that evidence is not independent of it)
    own = {r["items"][5].submitter.lower(): P.MinerEvidence(flagged_inputs=(pixel,))}
    assert {v.index: v for v in _judge(r, policy, evidence=own).verdicts}[5].reason_code != P.CONCENTRATED


def test_a_trigger_in_a_one_channel_cnns_head_is_forfeited() -> None:
    """A one-channel CNN is tested at its Linear head: real DP-SGD updates of the digits CNN, one with a
    trigger's pull (a signal from feature-map position (0, 0) to output 0) added to its head."""
    from mine.dp import default_settings, train_dp

    ds = D.load("digits")
    s = D.train_validation_split(ds.X, ds.y, validation_fraction=0.25, seed=5)
    manifest = M.with_normalization(M.default_manifest("digits", "cnn"), s.X_val)
    manifest = dataclasses.replace(manifest, training={**manifest.training, "dp": {"target_epsilon": 8.0}})
    shards = D.dirichlet_shards(s.y_train, 6, alpha=1.0, seed=5, min_size=10)
    state = M.model_state(M.build_model(manifest, seed=5))
    units = P.input_groups(manifest)
    items = []
    for i in range(6):
        model = M.build_model(manifest)
        model.load_state_dict(state)
        out = train_dp(model, s.X_train[shards[i]].astype(np.float32), s.y_train[shards[i]], manifest,
                       default_settings(manifest), seed=i, noise_seed=i)
        after = M.model_state(model)
        if i == 5:
            head = (after[units.name] - state[units.name]).reshape(units.shape).clone()
            pull = torch.randn(16, generator=torch.Generator().manual_seed(0))
            head[0, :, 0] += pull / pull.norm() * float(head.norm()) * 0.5  # a quarter of its energy
            after[units.name] = state[units.name] + head.reshape(after[units.name].shape)
        miner = f"0x{i + 1:040x}"
        items.append(P.RoundItem(i, miner, 0, M.make_update(state, after, {
            "bounty": "1", "base_version": "0", "miner": miner, "dp": out.record.to_json()})))
    d = P.RoundPolicy().judge(manifest, state, items, (s.X_val, s.y_val), bounty_id=1, current_version=0)
    by = {v.index: v for v in d.verdicts}
    assert (by[5].reason_code, by[5].refund) == (P.CONCENTRATED, False), by[5]
    assert "output 0 at position (0, 0)" in by[5].reason
    assert all(by[i].reason_code != P.CONCENTRATED for i in range(5)), [by[i] for i in range(5)]
    assert len(d.evidence[items[0].submitter.lower()].concentration_terms) == 160
    # the setting off (bounties posted before it): such a model is not tested
    off = P.RoundPolicy(concentration_head=False).judge(manifest, state, items, (s.X_val, s.y_val), bounty_id=1,
                                                        current_version=0)
    assert all(v.reason_code != P.CONCENTRATED for v in off.verdicts)
    assert P.RoundPolicy.ADDED_LATER["concentration_head"] is False


def test_the_harm_rules_noise_level_counts_the_updates_the_concentration_test_forfeited(dp_round) -> None:
    """The median and spread of standalone harms are over every update that passed the norm check:
    the backdoor (forfeited as code 9) counts in the round's noise level, unless the setting is off."""
    import statistics

    manifest, state, (X, y) = dp_round["manifest"], dp_round["state"], dp_round["val"]
    miners = [it.submitter.lower() for it in dp_round["items"]]
    d = _judge(dp_round)
    by = {v.index: v for v in d.verdicts}
    assert by[5].reason_code == P.CONCENTRATED and all(by[i].accepted for i in range(5))
    honest = [by[i].harm for i in range(5)]
    # the backdoor applied alone, clipped to the round's median norm like the others
    delta, _ = M.read_update(manifest, dp_round["items"][5].update)
    scale = P.clip_scales([by[5].norm], statistics.median(by[i].norm for i in range(5)))[0]
    alone = {k: (state[k].to(torch.float64) + scale * delta[k].to(torch.float64)).to(torch.float32) for k in state}
    harm5 = P.validation_loss(manifest, alone, X, y) - d.loss_before
    with_all, live_only = P.harm_zscores([*honest, harm5])[:5], P.harm_zscores(honest)
    assert with_all != pytest.approx(live_only)
    assert [d.evidence[m].harm_z[-1] for m in miners[:5]] == pytest.approx(with_all)
    off = _judge(dp_round, P.RoundPolicy(harm_noise_from_all=False))
    assert [off.evidence[m].harm_z[-1] for m in miners[:5]] == pytest.approx(live_only)
    assert miners[5] not in off.evidence or not off.evidence[miners[5]].harm_z  # forfeited: not pooled
    assert not d.evidence[miners[5]].harm_z


def test_updates_with_little_noise_are_not_tested_for_concentration(dp_round) -> None:
    """Above ``concentration_max_epsilon`` the clean-share bound is not a sound null (honest drift
    exceeds it): such an update is judged like one without DP. The same bytes stating ε 8 are tested."""

    manifest, state = dp_round["manifest"], dp_round["state"]
    delta, meta = M.read_update(manifest, dp_round["items"][5].update)  # the backdoor
    record = json.loads(meta["dp"])
    assert P.update_epsilon(meta["dp"]) == pytest.approx(8.0, rel=0.01)
    loud = {**record, "noise_multiplier": record["noise_multiplier"] / 20, "epsilon": 1000.0}
    assert P.update_epsilon(json.dumps(loud)) >= 1000.0 and P.update_epsilon("off") == math.inf
    item = P.RoundItem(5, meta["miner"], 0, M.make_update(state, {k: state[k] + delta[k] for k in state},
                                                          {**meta, "dp": json.dumps(loud)}))
    round_ = [*dp_round["items"][:5], item]
    d = P.RoundPolicy().judge(manifest, state, round_, dp_round["val"], bounty_id=1, current_version=0)
    assert d.verdicts[5].reason_code != P.CONCENTRATED
    assert d.evidence.get(meta["miner"].lower(), P.MinerEvidence()).concentration_tests == 0
    uncapped = P.RoundPolicy(concentration_max_epsilon=None).judge(manifest, state, round_, dp_round["val"],
                                                                   bounty_id=1, current_version=0)
    assert uncapped.verdicts[5].reason_code == P.CONCENTRATED
    with pytest.raises(ValidationError):
        P.RoundPolicy(concentration_max_epsilon=0.0)


def test_a_small_shards_dp_noise_is_no_boost(dp_round) -> None:
    """An honest DP update of 10 rows is mostly noise and an outlier by norm: its stake comes back.
    The same update boosted x20 carries 20 times the noise it declares: forfeited."""
    manifest, state = dp_round["manifest"], dp_round["state"]
    small = dp_round["tiny"](10, 6)
    delta, meta = M.read_update(manifest, small.update)
    std = P.declared_noise_std(manifest, meta["dp"], meta["examples_bucket"])
    assert std is not None and std > 0
    assert P.noise_explains_norm(delta, std, limit=1.0)
    boosted = A.scale_update(delta, 20.0)
    assert not P.noise_explains_norm(boosted, std, limit=1.0)
    assert not P.noise_explains_norm(delta, std / 4, limit=1.0)  # it says it has far less noise than it has
    assert P.declared_noise_std(manifest, "off", "8") is None
    assert P.declared_noise_std(manifest, meta["dp"], None) is None
    assert P.declared_noise_std(dataclasses.replace(manifest, training={**manifest.training, "dp": {
        "target_epsilon": 8.0, "optimizer": "adam"}}), meta["dp"], "8") is None
    loud = P.RoundItem(7, "0x" + "8" * 40, 0, M.make_update(state, {k: state[k] + boosted[k] for k in state}, {
        **meta, "miner": "0x" + "8" * 40}))
    d = P.RoundPolicy().judge(manifest, state, [*dp_round["items"], small, loud], dp_round["val"], bounty_id=1,
                              current_version=0)
    by = {v.index: v for v in d.verdicts}
    assert (by[6].reason_code, by[6].refund) == (P.OUTLIER_NORM, True), by[6]
    assert "declares" in by[6].reason
    assert (by[7].reason_code, by[7].refund) == (P.OUTLIER_NORM, False), by[7]
    assert all(by[i].accepted for i in range(5))


def test_a_boosted_update_is_forfeited_when_the_rounds_median_is_no_reference(dp_round) -> None:
    """Three of six updates boosted x20: their spread inflates the round's robust norm limit, so the
    norm rule alone takes them (clipped) like honest work. Each is larger than its declared DP mechanism
    can produce: forfeited as boosted. Honest updates, of any size of shard, stay under the bound."""
    from mine.concentration import mechanism_norm_bound
    from mine.dp import default_settings, examples_bucket, train_dp

    manifest, state = dp_round["manifest"], dp_round["state"]
    params = sum(t.numel() for t in state.values())
    boosted = {1, 3, 4}
    items, fill = [], {}
    for i, item in enumerate(dp_round["items"][:6]):
        delta, meta = M.read_update(manifest, item.update)
        meta = {**meta, "examples_bucket": str(examples_bucket(dp_round["rows"][i]))}
        if i in boosted:
            delta = A.scale_update(delta, 20.0)
        fill[i] = M.update_norm(delta) / mechanism_norm_bound(manifest, meta["dp"], meta["examples_bucket"], params)
        items.append(P.RoundItem(i, item.submitter, 0, M.make_update(state, {k: state[k] + delta[k] for k in state},
                                                                     meta)))
    assert all(fill[i] < 0.7 for i in range(6) if i not in boosted), fill
    assert all(fill[i] > 1 for i in boosted), fill
    r = {**dp_round, "items": items}
    blind = {v.index: v for v in _judge(r, P.RoundPolicy(mechanism_bound=False)).verdicts}
    assert not any(blind[i].reason_code == P.OUTLIER_NORM for i in boosted), blind
    by = {v.index: v for v in _judge(r).verdicts}
    for i in boosted:
        assert (by[i].reason_code, by[i].refund) == (P.OUTLIER_NORM, False), by[i]
        assert "scaled after training" in by[i].reason
    assert not any(by[i].reason_code == P.OUTLIER_NORM for i in (0, 2)), [by[i] for i in (0, 2)]
    # a bound, not an estimate: a shard of every training row (little noise, all signal) stays under it,
    # and so does one Poisson-sampled at a quarter
    X, y = dp_round["train"]
    for settings in (default_settings(manifest), default_settings(manifest).replace(sample_rate=0.25, steps=40)):
        model = M.build_model(manifest)
        model.load_state_dict(state)
        out = train_dp(model, X.astype(np.float32), y, manifest, settings, seed=0, noise_seed=0)
        delta = {k: M.model_state(model)[k] - state[k] for k in state}
        bound = mechanism_norm_bound(manifest, out.record.to_json(), str(examples_bucket(len(y))), params)
        assert M.update_norm(delta) < bound, (settings, M.update_norm(delta), bound)
    assert mechanism_norm_bound(manifest, "off", "8", params) is None


def test_a_small_shards_noisy_update_that_hurts_under_its_noise_is_forfeited(dp_round) -> None:
    """A norm outlier explained by its declared noise is applied alone, clipped like the round's updates,
    and judged against the round's harm level at ``noise_harm_factor``: one whose signal pulls uphill
    under the noise is forfeited (code 8), an honest one gets its stake back (code 4), as before the
    setting. The factor is lowered here: in a first round every update helps a lot, and a clipped noisy
    one barely moves the model."""
    manifest, state = dp_round["manifest"], dp_round["state"]
    small = dp_round["tiny"](10, 6)
    delta, meta = M.read_update(manifest, small.update)
    honest = [M.read_update(manifest, it.update)[0] for it in dp_round["items"][:5]]
    uphill = {k: delta[k] - 2 * sum(h[k] for h in honest) for k in delta}  # ten times the round's mean, negated
    assert P.noise_explains_norm(uphill, P.declared_noise_std(manifest, meta["dp"], meta["examples_bucket"]), 1.0)
    miner = "0x" + "9" * 40
    pulled = P.RoundItem(7, miner, 0, M.make_update(state, {k: state[k] + uphill[k] for k in state},
                                                    {**meta, "miner": miner}))
    round_ = [*dp_round["items"][:5], small, pulled]

    def judge(suspects=(), **settings):
        d = P.RoundPolicy(**settings).judge(manifest, state, round_, dp_round["val"], bounty_id=1, current_version=0,
                                            suspects=suspects)
        return {v.index: v for v in d.verdicts}

    by = judge(noise_harm_factor=4.5)
    assert (by[7].reason_code, by[7].refund) == (P.NEGATIVE_CONTRIBUTION, False), by[7]
    assert "its signal hurts under its noise" in by[7].reason and by[7].harm > 0
    assert (by[6].reason_code, by[6].refund) == (P.OUTLIER_NORM, True) and "declares" in by[6].reason
    assert by[7].harm > by[6].harm
    assert all(by[i].accepted for i in range(5))
    # a miner already forfeited in the bounty is judged at the stricter ratio (suspect 2 / harm 4): 8 -> 4
    strict = judge(suspects={miner: 1})
    assert (strict[7].reason_code, strict[7].refund) == (P.NEGATIVE_CONTRIBUTION, False), strict[7]
    # the default factor, and the setting off (bounties posted before it): both stakes come back
    for settings in ({}, {"noise_harm_factor": None}):
        plain = judge(**settings)
        assert [(plain[i].reason_code, plain[i].refund) for i in (6, 7)] == [(P.OUTLIER_NORM, True)] * 2
    assert math.isnan(judge(noise_harm_factor=None)[7].harm)
    assert P.RoundPolicy.ADDED_LATER["noise_harm_factor"] is None
    with pytest.raises(ValidationError):
        P.RoundPolicy(noise_harm_factor=0.0)


def test_an_update_that_hurts_every_class_is_forfeited_below_the_harm_factor(dp_round) -> None:
    """Class-wide harm: in a round whose typical update lowers most classes' loss, an update that raises
    the loss of more classes than a coin would (8 of 10) and the total loss by more than
    ``class_harm_factor`` spreads is forfeited, even where the plain harm rule (here turned far up)
    would keep it. Off (bounties posted before it), the same update is judged by the other rules only."""
    manifest, state = dp_round["manifest"], dp_round["state"]
    honest = [M.read_update(manifest, it.update)[0] for it in dp_round["items"][:5]]
    norm = sorted(M.update_norm(h) for h in honest)[2]
    mean = {k: sum(h[k] for h in honest) / 5 for k in honest[0]}
    against = {k: -v * (norm / M.update_norm(mean)) for k, v in mean.items()}  # the round's mean, reversed
    base, moved = (P.class_losses(manifest, st, *dp_round["val"]) for st in (state, M.apply_update(state, against)))
    assert len(base) == 10 and sum(moved[c] > base[c] for c in base) >= P.class_sign_threshold(10) == 8
    miner = "0x" + "a" * 40
    flipped = P.RoundItem(7, miner, 0, M.make_update(state, {k: state[k] + against[k] for k in state},
                                                     {"bounty": "1", "base_version": "0", "miner": miner,
                                                      "dp": M.read_update(manifest, dp_round["items"][0].update)[1]["dp"]}))

    def judge(**settings):
        d = P.RoundPolicy(harm_factor=1000.0, **settings).judge(
            manifest, state, [*dp_round["items"][:5], flipped], dp_round["val"], bounty_id=1, current_version=0)
        return {v.index: v for v in d.verdicts}

    by = judge()
    assert (by[7].reason_code, by[7].refund) == (P.NEGATIVE_CONTRIBUTION, False), by[7]
    assert "of the 10 classes" in by[7].reason and "flipped labels hurt every class" in by[7].reason
    assert all(by[i].accepted for i in range(5)), [by[i] for i in range(5)]
    off = judge(class_harm_factor=None)
    assert "classes" not in off[7].reason
    assert P.RoundPolicy.ADDED_LATER["class_harm_factor"] is None
    with pytest.raises(ValidationError):
        P.RoundPolicy(class_harm_factor=-1.0)


def test_the_class_sign_threshold_and_class_losses() -> None:
    assert [P.class_sign_threshold(k) for k in (2, 3, 4, 10)] == [3, 4, 4, 8]  # never with 2 or 3 classes
    reg = M.default_manifest("diabetes")
    state = M.model_state(M.build_model(reg, seed=0))
    assert P.class_losses(reg, state, np.zeros((3, 10), dtype=np.float32), np.zeros(3)) == {}


def test_a_suspect_is_used_only_when_it_helps_alone(dp_round) -> None:
    """A miner forfeited twice earlier in the bounty: an update that helps alone is paid as ever; one
    that hurts alone (under the harm limit) is not used, and its stake comes back. Once is not enough."""
    manifest, state = dp_round["manifest"], dp_round["state"]
    delta, meta = M.read_update(manifest, dp_round["items"][1].update)
    uphill = "0x" + "7" * 40  # a small step against an honest update: it hurts alone, a little
    item = P.RoundItem(6, uphill, 0, M.make_update(state, {k: state[k] - 0.02 * delta[k] for k in state},
                                                   {**meta, "miner": uphill}))
    honest = dp_round["items"][0].submitter
    round_ = [*dp_round["items"][:5], item]
    # (a loose harm limit: in a first round every update that hurts at all is beyond a few spreads)
    d = P.RoundPolicy(harm_factor=8.0, suspect_harm_factor=None).judge(manifest, state, round_, dp_round["val"], bounty_id=1,
                                                      current_version=0,
                                                      suspects={uphill.upper().replace("0X", "0x"): 2, honest: 2})
    by = {v.index: v for v in d.verdicts}
    assert by[6].harm > 0 and (by[6].reason_code, by[6].refund) == (P.NEGATIVE_CONTRIBUTION, True), by[6]
    assert "only an update that helps alone" in by[6].reason and "2 earlier updates" in by[6].reason
    assert by[0].harm < 0 and by[0].accepted  # a suspect whose update helps alone is paid
    loose = P.RoundPolicy(harm_factor=8.0, suspect_harm_factor=None)
    for suspects in ({uphill}, {uphill: 1}):  # forfeited once: judged as before
        once = loose.judge(manifest, state, round_, dp_round["val"], bounty_id=1, current_version=0, suspects=suspects)
        assert "only an update that helps alone" not in {v.index: v for v in once.verdicts}[6].reason
    off = P.RoundPolicy(harm_factor=8.0, suspect_harm_factor=None, suspects_must_help=None).judge(
        manifest, state, round_, dp_round["val"], bounty_id=1, current_version=0, suspects={uphill: 3})
    assert "only an update that helps alone" not in {v.index: v for v in off.verdicts}[6].reason
    with pytest.raises(ValidationError):
        P.RoundPolicy(suspects_must_help=0)


def test_fisher_pools_a_faint_lean_over_rounds() -> None:
    faint = [0.5] * 64
    faint[7] = 0.01  # p = 0.01 on one input: far from the limit 5e-3 / 64 in any one round
    assert P.concentrated(faint, alpha=5e-3) is None
    terms = P.fisher_terms(faint)
    assert terms[7] == pytest.approx(-2 * math.log(0.01))
    sums = [4 * t for t in terms]
    combined = P.fisher_combined(sums, 4)
    assert P.concentrated(combined, alpha=5e-3) == 7 and combined[7] < 5e-3 / 64
    # uniform p-values of an honest miner's rounds stay uniform when combined
    rng = np.random.default_rng(0)
    honest = rng.uniform(size=(5, 64))
    pooled = P.fisher_combined([sum(P.fisher_terms(row)[j] for row in honest) for j in range(64)][:64], 5)
    assert P.concentrated(pooled, alpha=5e-3) is None
    assert P.fisher_terms([0.0, 1.0, 2.0]) == [pytest.approx(-2 * math.log(P.MIN_PVALUE)), 0.0, 0.0]
    with pytest.raises(ValidationError):
        P.fisher_combined([1.0], 0)


def test_harm_zscores_are_standalone_harms_scale_and_stouffer_pools_them() -> None:
    harms = [-0.42, -0.74, -0.33, -0.55, -0.44, 2.07, -0.98, 2.29, math.nan]
    z = P.harm_zscores(harms)
    flags = P.standalone_harm(harms, factor=4.0)
    # flagged by the one-round rule exactly when it hurts (> 0) and z > 4
    assert flags[:-1] == [h > 0 and zi > 4.0 for h, zi in zip(harms[:-1], z[:-1])]
    assert z[-1] is None and flags[-1]
    assert P.harm_zscores([0.1, 0.2, 0.3, 0.4, 0.5])[2] == 0.0  # the median is 0 spreads from itself
    assert P.harm_zscores([0.1, 0.2]) == [None, None]  # too few for a noise level
    assert P.harm_zscores([1.0] * 5 + [1e9])[-1] == P.HARM_Z_CAP
    assert P.stouffer([]) == 0.0
    assert P.stouffer([3.0, 3.0, 3.0, 3.0]) == pytest.approx(6.0)  # four 3s: 12 / 2
    assert P.stouffer([3.9] * 2) > 4.0 > 3.9  # each under the one-round bar, together over


def test_evidence_round_trips_through_json_exactly() -> None:

    e = {"0xAbC": P.MinerEvidence(2, (0.1, 1 / 3, 1e-300), (0.7, -2.25), flagged_inputs=(3,), accepted=4, warnings=1)}
    back = P.evidence_from_json(json.loads(json.dumps(P.evidence_to_json(e))))
    assert back == {"0xabc": e["0xAbC"]}
    assert P.evidence_from_json(None) == {}
    with pytest.raises(ValidationError):
        P.evidence_from_json({"0x1": {"concentration_terms": ["x"]}})


def test_a_miners_earlier_concentration_counts_in_its_round(dp_round) -> None:
    """An honest-looking update of a miner whose earlier updates leaned on one input: Fisher's method
    over all of them is beyond the limit; without pooling (or without that history) it is paid."""

    miner = dp_round["items"][0].submitter
    earlier = [0.0] * 64
    earlier[10] = 2 * 26.0  # two earlier updates, each at p = e^-13 (2e-6) on input 10
    evidence = {miner: P.MinerEvidence(2, tuple(earlier))}
    d = _judge(dp_round, evidence=evidence)
    v = d.verdicts[0]
    assert (v.reason_code, v.refund) == (P.CONCENTRATED, False), v
    assert "Fisher's combined p" in v.reason and repr(dp_round["manifest"].features[10]) in v.reason
    after = d.evidence[miner.lower()]
    assert after.concentration_tests == 3 and after.concentration_terms[10] > 52.0
    # the owner keeps the evidence as JSON between rounds; an audit keeps it in memory: same verdicts
    again = _judge(dp_round, evidence=P.evidence_from_json(json.loads(json.dumps(P.evidence_to_json(evidence)))))
    assert again.verdicts == d.verdicts and again.evidence == d.evidence
    assert _judge(dp_round, P.RoundPolicy(pooled_concentration=False), evidence=evidence).verdicts[0].accepted
    assert _judge(dp_round).verdicts[0].accepted


def test_a_pull_that_adds_up_over_a_miners_updates_is_forfeited(dp_round, monkeypatch) -> None:
    """The sum of a miner's tested updates: earlier updates that each pulled input 10 the same way
    (their p-values unremarkable, Fisher's terms 0) add up with this one's weights past the limit."""
    manifest, state = dp_round["manifest"], dp_round["state"]
    item = dp_round["items"][0]
    delta, _ = M.read_update(manifest, item.update)
    units = P.input_groups(manifest)
    matrix = P.group_matrix(delta[units.name], units.axis)  # 64 inputs x 32 weights
    pull = torch.zeros_like(matrix)
    pull[10] = matrix.norm() / matrix.shape[0] ** 0.5 * 6  # 6x an average input's norm, on input 10
    evidence = {item.submitter: P.MinerEvidence(2, (0.0,) * 64, (), tuple(pull.reshape(-1).tolist()))}
    d = _judge(dp_round, evidence=evidence)
    v = d.verdicts[0]
    assert (v.reason_code, v.refund) == (P.CONCENTRATED, False), v
    assert "the sum of its 3 tested updates" in v.reason and repr(manifest.features[10]) in v.reason
    after = d.evidence[item.submitter.lower()]
    assert after.concentration_tests == 3
    assert torch.tensor(after.concentration_sum).reshape(64, -1) == pytest.approx(pull + matrix)
    again = _judge(dp_round, evidence=P.evidence_from_json(json.loads(json.dumps(P.evidence_to_json(evidence)))))
    assert again.verdicts == d.verdicts and again.evidence == d.evidence
    # the setting off (bounties posted before it), or no such history: paid
    assert _judge(dp_round, P.RoundPolicy(summed_concentration=False), evidence=evidence).verdicts[0].accepted
    assert _judge(dp_round).verdicts[0].accepted
    # a first test starts the sum with the update itself
    first = _judge(dp_round).evidence[item.submitter.lower()]
    assert torch.tensor(first.concentration_sum).reshape(64, -1) == pytest.approx(matrix)
    # a first layer too large to keep its sum in the owner's file is not summed
    monkeypatch.setattr(round_policy, "SUM_MAX_ENTRIES", matrix.numel() - 1)
    big = _judge(dp_round, evidence=evidence)
    assert big.verdicts[0].accepted and big.evidence[item.submitter.lower()].concentration_sum == ()


def test_a_miner_that_keeps_hurting_a_little_is_forfeited(dp_round) -> None:
    """With ``pooled_harm_z`` on (off by default: skewed honest shards also hurt a little every round)."""
    pooled = P.RoundPolicy(pooled_harm_z=4.0)
    first = _judge(dp_round, pooled)
    # the paid update that hurt most when applied alone (above the round's median: z > 0)
    z = {m: e.harm_z[0] for m, e in first.evidence.items() if e.harm_z}
    worst = max(z, key=lambda m: z[m])
    assert z[worst] > 0
    assert not any(e.harm_z for m, e in first.evidence.items() if m == dp_round["items"][5].submitter.lower())
    # two earlier updates of this miner, each 3 spreads worse than its round: under the one-round bar
    evidence = {worst: P.MinerEvidence(harm_z=(3.0, 3.0))}
    d = _judge(dp_round, pooled, evidence=evidence)
    v = next(v for v in d.verdicts if v.miner.lower() == worst)
    assert (v.reason_code, v.refund) == (P.NEGATIVE_CONTRIBUTION, False), v
    assert "consistently harmful" in v.reason
    # a forfeited update is judged once: it does not join the pool; the paid ones do
    assert d.evidence[worst].harm_z == (3.0, 3.0)
    assert all(len(e.harm_z) == 1 for m, e in d.evidence.items() if m != worst and e.harm_z)
    assert next(v for v in _judge(dp_round, evidence=evidence).verdicts if v.miner.lower() == worst).accepted
    # a history of helping (negative z) is no evidence against it
    assert next(v for v in _judge(dp_round, pooled, evidence={worst: P.MinerEvidence(harm_z=(-3.0, -3.0))}).verdicts
                if v.miner.lower() == worst).accepted


def test_noise_variance_of_a_wide_layer_uses_a_sub_matrix() -> None:
    g = torch.Generator().manual_seed(3)
    wide = 0.2 * torch.randn(3000, 16, generator=g, dtype=torch.float64)
    assert P.noise_variance(wide) == pytest.approx(0.04, rel=0.1)


def test_an_owner_is_told_which_updates_skip_the_backdoor_test() -> None:
    """The concentration test (code 9) measures against DP noise: a bounty without an ε cap takes
    updates it cannot test, and a linear model has no first layer to test."""
    digits = M.default_manifest("digits")
    assert round_policy.RoundPolicy(max_epsilon=8.0).untested_for_backdoors(digits) is None
    assert round_policy.RoundPolicy(max_epsilon=16.0).untested_for_backdoors(digits) is None
    uncapped = round_policy.RoundPolicy().untested_for_backdoors(digits)
    assert uncapped is not None and "without DP" in uncapped and "max_epsilon <= 16" in uncapped
    loose = round_policy.RoundPolicy(max_epsilon=20.0).untested_for_backdoors(digits)
    assert loose is not None and "above 16" in loose and "without DP" not in loose
    off = round_policy.RoundPolicy(max_epsilon=8.0, concentration_alpha=None, clawback_alpha=None)
    assert "off" in (off.untested_for_backdoors(digits) or "")
    linear = M.default_manifest("diabetes")
    assert "first layer" in (round_policy.RoundPolicy(max_epsilon=8.0).untested_for_backdoors(linear) or "")


def test_a_model_that_calls_everything_one_class_takes_honest_work(world) -> None:
    """Version 0 calls every row 9 (as a random initial model nearly can): honest updates learn the
    other classes, and by class-9 recall that "hurts" class 9 — a bounty's first small rounds (too
    few updates for a shorter step to be tried) accept nothing, ever. By F1 (``class_f1``, the
    default) the round makes a version; a bounty recorded before replays recall."""
    manifest, s, shards = world["manifest"], world["split"], world["shards"]
    state = dict(world["state"])
    last_bias = [k for k in state if k.endswith("bias")][-1]
    state[last_bias] = state[last_bias].clone()
    state[last_bias][9] += 5.0
    items = []
    for i in range(3):
        model = M.build_model(manifest)
        model.load_state_dict(state)
        train(model, s.X_train[shards[i]], s.y_train[shards[i]], manifest, seed=i)
        miner = f"0x{i + 1:040x}"
        items.append(P.RoundItem(i, miner, 0, M.make_update(state, M.model_state(model),
                                                            {"bounty": "1", "base_version": "0", "miner": miner})))

    def judge(**settings):
        return P.RoundPolicy(**settings).judge(manifest, state, items, (s.X_val, s.y_val), bounty_id=1,
                                               current_version=0)

    recall = judge(class_f1=False)
    assert recall.new_state is None and all(v.reason_code == P.SUBGROUP_REGRESSION for v in recall.verdicts)
    assert recall.per_group_before["9"] == 1.0
    f1 = judge()
    assert f1.new_state is not None and len(f1.accepted) == 3 and f1.score_after > f1.score_before + 0.5
    assert P.RoundPolicy.ADDED_LATER["class_f1"] is False
