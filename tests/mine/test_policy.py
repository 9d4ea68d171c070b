"""mine.policy: each rule at its boundary, and DefaultPolicy against honest and malicious updates on digits."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from mine import attacks as A
from mine import model as M
from mine import policy as P
from mine.errors import ValidationError
from mine.train import train
from tests.mine.fixtures_digits import digits_policy_setting

# --------------------------------------------------------------------------- rules


def test_reason_codes() -> None:
    assert sorted(P.REASONS) == [1, 2, 3, 4, 5, 6, 7, 8, 9]  # the design's codes (mine.reasons)
    assert all(isinstance(v, str) and v for v in P.REASONS.values())
    assert (P.STRUCTURE, P.NO_IMPROVEMENT, P.SUBGROUP_REGRESSION, P.OUTLIER_NORM, P.UNREADABLE) == (1, 2, 3, 4, 5)
    assert (P.NOT_SUBMITTERS, P.EPSILON_TOO_HIGH, P.NEGATIVE_CONTRIBUTION, P.CONCENTRATED) == (6, 7, 8, 9)


@pytest.fixture(scope="module")
def tiny() -> M.Manifest:
    return M.Manifest(name="tiny", task="classification", features=["a", "b"], target="t", num_classes=2,
                      layers=[{"type": "Linear", "in_features": 2, "out_features": 2}], loss="cross_entropy",
                      metric="accuracy")


def _zeros(manifest: M.Manifest) -> dict[str, torch.Tensor]:
    return {k: torch.zeros(s) for k, s in M.parameter_shapes(manifest).items()}


def test_check_structure(tiny: M.Manifest) -> None:
    good = _zeros(tiny)
    assert P.check_structure(tiny, good) is None
    assert P.check_structure(tiny, M.state_to_bytes(good)) is None
    nan = dict(good, **{"0.bias": torch.tensor([0.0, math.nan])})
    assert P.check_structure(tiny, nan).code == 1
    assert P.check_structure(tiny, M.state_to_bytes(nan)).code == 1
    assert P.check_structure(tiny, dict(good, **{"0.bias": torch.zeros(3)})).code == 1
    assert P.check_structure(tiny, {"0.weight": good["0.weight"]}).code == 1
    assert P.check_structure(tiny, dict(good, **{"0.bias": torch.zeros(2, dtype=torch.float64)})).code == 1
    # size: 6 float32 = 24 bytes of tensors
    assert P.check_structure(tiny, good, max_bytes=24) is None
    assert P.check_structure(tiny, good, max_bytes=23).code == 1
    data = M.state_to_bytes(good)
    assert P.check_structure(tiny, data, max_bytes=len(data)) is None
    assert P.check_structure(tiny, data, max_bytes=len(data) - 1).code == 1
    # not safetensors at all: unreadable
    assert P.check_structure(tiny, b"\x00garbage").code == 5
    assert P.check_structure(tiny, data[:-3]).code == 5


@pytest.mark.parametrize("before,after,higher,margin,ok", [
    (0.5, 0.51, True, 0.01, True),          # exactly the margin passes
    (0.5, 0.509999, True, 0.01, False),     # one fixed-point unit short
    (0.7, 0.71, True, 0.01, True),          # 0.71 - 0.7 < 0.01 in binary floats, exact in fixed point
    (0.5, 0.5, True, 0.0, False),           # no change is not an improvement
    (0.5, 0.500001, True, 0.0, True),       # the smallest representable gain
    (0.5, 0.4, True, 0.0, False),
    (100.0, 99.0, False, 1.0, True),        # lower is better (MSE)
    (100.0, 99.000001, False, 1.0, False),
    (100.0, 101.0, False, 0.0, False),
    (0.5, math.nan, True, 0.0, False),
])
def test_check_improvement_boundaries(before: float, after: float, higher: bool, margin: float, ok: bool) -> None:
    r = P.check_improvement(before, after, higher_is_better=higher, min_improvement=margin)
    assert (r is None) is ok
    if not ok:
        assert r.code == 2 and "score" in r.reason


def test_check_improvement_bad_margin() -> None:
    with pytest.raises(ValidationError, match="min_improvement"):
        P.check_improvement(0.1, 0.2, higher_is_better=True, min_improvement=-0.1)


def test_check_subgroups_boundaries() -> None:
    before = {"0": 0.9, "1": 0.8, "2": 0.7}
    ok = P.check_subgroups(before, {"0": 0.8, "1": 0.95, "2": 0.75}, higher_is_better=True, tolerance=0.1)
    assert ok is None  # a drop of exactly the tolerance passes
    r = P.check_subgroups(before, {"0": 0.799999, "1": 0.95, "2": 0.75}, higher_is_better=True, tolerance=0.1)
    assert r.code == 3 and "'0'" in r.reason
    # the worst group is named, even when the overall score would improve a lot
    r = P.check_subgroups(before, {"0": 1.0, "1": 0.6, "2": 0.3}, higher_is_better=True, tolerance=0.05)
    assert r.code == 3 and "'2'" in r.reason
    # lower is better: a rise of the error is the regression
    assert P.check_subgroups({"a": 10.0}, {"a": 10.5}, higher_is_better=False, tolerance=0.5, relative=False) is None
    assert P.check_subgroups({"a": 10.0}, {"a": 10.500001}, higher_is_better=False, tolerance=0.5,
                             relative=False).code == 3
    # error metrics compare relatively by default: 5 % of a group's MSE of 10.0 is 0.5
    assert P.check_subgroups({"a": 10.0}, {"a": 10.5}, higher_is_better=False, tolerance=0.05) is None
    r = P.check_subgroups({"a": 10.0, "b": 1.0}, {"a": 10.0, "b": 1.06}, higher_is_better=False, tolerance=0.05)
    assert r is not None and r.code == 3 and "'b'" in r.reason
    assert P.check_subgroups({"a": 1.0}, {}, higher_is_better=True, tolerance=0.1).code == 3
    assert P.check_subgroups({}, {}, higher_is_better=True, tolerance=0.0) is None


def test_check_outlier_boundaries() -> None:
    hist = [1.0, 1.1, 0.9, 1.2, 0.8]  # median 1.0, MAD 0.1 -> spread max(0.14826, 0.25) = 0.25
    limit = 1.0 + 4 * 0.25
    assert P.check_outlier(limit, hist, factor=4, min_history=3) is None
    r = P.check_outlier(limit + 1e-9, hist, factor=4, min_history=3)
    assert r.code == 4 and "median 1" in r.reason
    assert P.check_outlier(0.0, hist, factor=4, min_history=3) is None  # small norms are never outliers
    # too little history: everything finite passes; non-finite never does
    assert P.check_outlier(1e9, hist[:2], factor=4, min_history=3) is None
    assert P.check_outlier(math.inf, [], factor=4, min_history=3).code == 4
    assert P.check_outlier(math.nan, hist, factor=4, min_history=3).code == 4
    # robust: one huge accepted norm in the history does not raise the bar much
    spread = 1.4826 * 1.0  # hist2 median 2, MAD 1
    hist2 = [1.0, 2.0, 3.0, 1.0, 3.0, 1000.0, 2.0]
    assert P.check_outlier(2 + 3 * spread, hist2, factor=3, min_history=3) is None
    assert P.check_outlier(2 + 3 * spread + 1e-6, hist2, factor=3, min_history=3).code == 4
    with pytest.raises(ValidationError, match="factor"):
        P.check_outlier(1.0, hist, factor=0, min_history=3)


def test_norm_bound() -> None:
    assert P.norm_bound([1.0, 3.0], factor=2, min_history=3) is None
    assert P.norm_bound([1.0, 3.0, 2.0, 100.0], factor=2, min_history=3) == 5.0


# --------------------------------------------------------------------------- policies on digits


@pytest.fixture(scope="module")
def world():
    """Digits: the owner's validation set, an honestly improved current model, honest updates and norms."""
    s, manifest, shards = digits_policy_setting()

    def local_update(state, X, y, seed):
        model = M.build_model(manifest)
        model.load_state_dict(state)
        r = train(model, X, y, manifest, seed=seed)
        return M.make_update(state, M.model_state(model), {"base_version": "0", **r.to_metadata()})

    state0 = M.model_state(M.build_model(manifest, seed=0))
    # version 1: the owner's own warm start, so later updates are judged against a decent model
    warm = M.read_update(manifest, local_update(state0, s.X_train[shards[0]], s.y_train[shards[0]], 0))[0]
    state1 = M.apply_update(state0, warm)
    honest = [local_update(state1, s.X_train[sh], s.y_train[sh], i) for i, sh in enumerate(shards[1:4], 1)]
    norms = [M.update_norm(M.read_update(manifest, u)[0]) for u in honest]
    return dict(manifest=manifest, split=s, shards=shards, state0=state0, state1=state1, honest=honest, norms=norms,
                local_update=local_update, validation=(s.X_val, s.y_val))


def test_default_policy_accepts_honest_update_from_random_init(world) -> None:
    m, s = world["manifest"], world["split"]
    upd = world["local_update"](world["state0"], s.X_train[world["shards"][5]], s.y_train[world["shards"][5]], 5)
    d = P.DefaultPolicy().decide(m, world["state0"], upd, world["validation"], [])
    assert d.accepted and d.reason_code == 0 and d.reason == "accepted"
    assert d.score_before < 0.2 and d.score_after > 0.7
    assert d.new_state is not None and d.clip_norm is None
    assert d.metadata["base_version"] == "0" and int(d.metadata["examples"]) == len(world["shards"][5])
    assert d.chain_score == round(d.score_after * 1e6)


def test_default_policy_accepts_honest_update_on_trained_model(world) -> None:
    d = P.DefaultPolicy().decide(world["manifest"], world["state1"], world["honest"][0], world["validation"],
                                 world["norms"])
    assert d.accepted, d.reason
    assert d.score_after > d.score_before > 0.8
    # the update was clipped to the median of the accepted norms, then halved (server_lr 0.5)
    delta = M.read_update(world["manifest"], world["honest"][0])[0]
    assert d.clip_norm == pytest.approx(float(np.median(world["norms"])))
    applied = {k: d.new_state[k].double() - world["state1"][k].double() for k in delta}
    assert M.update_norm(applied) == pytest.approx(0.5 * min(d.norm, d.clip_norm), rel=1e-4)
    # deterministic: the same decision and new weights every time
    again = P.DefaultPolicy().decide(world["manifest"], world["state1"], world["honest"][0], world["validation"],
                                     world["norms"])
    assert (again.score_before, again.score_after, again.norm) == (d.score_before, d.score_after, d.norm)
    assert M.state_to_bytes(again.new_state) == M.state_to_bytes(d.new_state)


def test_default_policy_rejects_label_flipped_update(world) -> None:
    m, s, sh = world["manifest"], world["split"], world["shards"][1]
    flipped = A.label_flip(s.y_train[sh], m.num_classes, seed=0)
    upd = world["local_update"](world["state1"], s.X_train[sh], flipped, 1)
    d = P.DefaultPolicy().decide(m, world["state1"], upd, world["validation"], world["norms"])
    assert not d.accepted and d.new_state is None
    assert d.reason_code in (2, 3, 4), d.reason
    if d.reason_code != 4:
        assert d.score_after < d.score_before  # it would have made the model worse


def test_default_policy_rejects_boosted_update(world) -> None:
    m = world["manifest"]
    delta = M.read_update(m, world["honest"][0])[0]
    boosted = M.state_to_bytes(A.scale_update(delta, 20.0))
    d = P.DefaultPolicy().decide(m, world["state1"], boosted, world["validation"], world["norms"])
    assert not d.accepted and d.reason_code == 4 and math.isnan(d.score_after)
    assert d.norm == pytest.approx(20 * M.update_norm(delta), rel=1e-5)
    assert d.chain_score == round(d.score_before * 1e6)
    # the baseline without defences takes it, and the model gets worse
    base = P.AcceptAllPolicy().decide(m, world["state1"], boosted, world["validation"], world["norms"])
    assert base.accepted and base.score_after < base.score_before


def test_default_policy_rejects_noise_update(world) -> None:
    m = world["manifest"]
    delta = M.read_update(m, world["honest"][0])[0]
    noise = A.noise_update(delta, 1.0, seed=0)
    d = P.DefaultPolicy().decide(m, world["state1"], noise, world["validation"], world["norms"])
    assert not d.accepted and d.reason_code == 2, d.reason
    assert d.norm == pytest.approx(M.update_norm(delta), rel=1e-5)  # same norm: only evaluation can tell


def test_default_policy_rejects_malformed_and_unreadable(world) -> None:
    m, state = world["manifest"], world["state1"]
    wrong = {k: v.clone() for k, v in state.items()}
    wrong["2.bias"] = torch.zeros(3)
    d = P.DefaultPolicy().decide(m, state, M.state_to_bytes(wrong), world["validation"], world["norms"])
    assert (d.accepted, d.reason_code) == (False, 1) and math.isnan(d.norm)
    d = P.DefaultPolicy().decide(m, state, b"<html>not found</html>", world["validation"], world["norms"])
    assert (d.accepted, d.reason_code) == (False, 5)
    d = P.AcceptAllPolicy().decide(m, state, b"", world["validation"], [])
    assert (d.accepted, d.reason_code) == (False, 5)


def test_default_policy_margin_and_subgroup_guard(world) -> None:
    m, upd = world["manifest"], world["honest"][0]
    d = P.DefaultPolicy(min_improvement=0.5).decide(m, world["state1"], upd, world["validation"], world["norms"])
    assert (d.accepted, d.reason_code) == (False, 2) and d.score_after > d.score_before
    # an update trained only on digits 0-4 forgets 5-9: a subgroup regression even at zero tolerance
    s = world["split"]
    low = np.flatnonzero(s.y_train < 5)
    forget = world["local_update"](world["state1"], s.X_train[low], s.y_train[low], 9)
    d = P.DefaultPolicy(subgroup_tolerance=0.0, server_lr=1.0).decide(m, world["state1"], forget, world["validation"],
                                                                       [])
    assert not d.accepted and d.reason_code in (2, 3)
    # by F1 the forgotten classes fall most (0.65-0.90 here); 0-4 fall a little, as rows of 5-9 are now
    # called 0-4 (0.02-0.25)
    drop = {g: d.per_group_before[g] - d.per_group_after[g] for g in d.per_group_before}
    assert min(drop[str(c)] for c in range(5, 10)) > 2 * max(drop[str(c)] for c in range(5))
    # with explicit groups the keys follow the group array
    groups = np.where(s.y_val % 2 == 0, "even", "odd")
    d = P.DefaultPolicy().decide(m, world["state1"], upd, (s.X_val, s.y_val, groups), world["norms"])
    assert set(d.per_group_before) == {"even", "odd"}


def test_registry_and_settings() -> None:
    assert set(P.POLICIES) == {"default", "accept-all", "round"}
    p = P.make_policy("default", server_lr=0.25, outlier_factor=3.0)
    assert isinstance(p, P.DefaultPolicy) and isinstance(p, P.Policy)
    assert p.settings()["server_lr"] == 0.25 and p.settings()["policy"] == "default"
    assert isinstance(P.make_policy("accept-all"), P.Policy)
    with pytest.raises(ValidationError, match="choose one of accept-all, default, round"):
        P.make_policy("trust-me")
    with pytest.raises(ValidationError, match="bad settings"):
        P.make_policy("default", learning_rate=1.0)
    with pytest.raises(ValidationError, match="server_lr"):
        P.DefaultPolicy(server_lr=0.0)
    with pytest.raises(ValidationError, match="min_history"):
        P.DefaultPolicy(min_history=0)
    with pytest.raises(TypeError):
        P.DefaultPolicy(0.1)  # type: ignore[misc]  # settings are keyword-only


def test_norm_bounding_blunts_a_backdoor(world) -> None:
    m, s, sh = world["manifest"], world["split"], world["shards"][2]
    trigger = A.make_trigger(s.X_train, list(range(8)))
    Xb, yb = A.backdoor(s.X_train[sh], s.y_train[sh], trigger=trigger, target_label=0, fraction=0.3, seed=0)
    upd = world["local_update"](world["state1"], Xb, yb, 2)

    def success(state) -> float:
        model = M.build_model(m)
        model.load_state_dict(state)
        return A.backdoor_success(model, s.X_val, s.y_val, m, trigger=trigger, target_label=0)

    undefended = P.AcceptAllPolicy().decide(m, world["state1"], upd, world["validation"], world["norms"])
    defended = P.DefaultPolicy().decide(m, world["state1"], upd, world["validation"], world["norms"])
    assert success(undefended.new_state) > 0.5
    if defended.accepted:  # a backdoor that also helps clean accuracy can pass the score checks ...
        assert success(defended.new_state) < success(undefended.new_state) - 0.2  # ... but is clipped and damped


# ------------------------------------------------------------------------------- epsilon (code 7)


def test_check_epsilon_recomputes_and_rejects_above_the_bounty_maximum() -> None:
    from mine import dp
    from mine.policy import EPSILON_TOO_HIGH, check_epsilon

    record = dp.DPSettings(target_epsilon=3.0, sample_rate=1.0, steps=10).resolve(200)
    assert check_epsilon(record.to_json(), max_epsilon=None) is None
    assert check_epsilon("off", max_epsilon=None) is None
    assert check_epsilon(record.to_json(), max_epsilon=3.0) is None
    rej = check_epsilon(record.to_json(), max_epsilon=2.0)
    assert rej is not None and rej.code == EPSILON_TOO_HIGH and "above the bounty's maximum 2" in rej.reason
    # a miner understating its epsilon is caught: the accountant recomputes it from the mechanism
    lie = dataclasses.replace(record, epsilon=0.5)
    assert check_epsilon(lie.to_json(), max_epsilon=2.0).code == EPSILON_TOO_HIGH
    for bad in ("off", None, '{"epsilon": 1}'):
        assert check_epsilon(bad, max_epsilon=8.0).code == EPSILON_TOO_HIGH
    loose = dataclasses.replace(record, delta=0.01)
    assert "delta" in check_epsilon(loose.to_json(), max_epsilon=8.0).reason
