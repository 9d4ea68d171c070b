"""mine.model: manifest validation and canonical JSON, model building, safetensors weights and updates."""

from __future__ import annotations

import json
import math
import struct

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mine import model as M
from mine.errors import ValidationError, VaultError


@pytest.fixture(scope="module")
def digits() -> M.Manifest:
    return M.default_manifest("digits")


def _digits_dict() -> dict:
    return M.default_manifest("digits").to_dict()


def _small(**changes) -> dict:
    """A 3-feature binary classifier manifest as plain data, with changes applied."""
    d = {
        "name": "tiny", "task": "classification", "features": ["a", "b", "c"], "target": "t", "num_classes": 2,
        "layers": [{"type": "Linear", "in_features": 3, "out_features": 4}, {"type": "ReLU"},
                   {"type": "Linear", "in_features": 4, "out_features": 2}],
        "loss": "cross_entropy", "metric": "accuracy",
    }
    d.update(changes)
    return d


def _bytes(d: dict) -> bytes:
    return json.dumps(d).encode()


# --------------------------------------------------------------------------- manifests


@pytest.mark.parametrize("name,features,out,task", [
    ("digits", 64, 10, "classification"), ("breast_cancer", 30, 2, "classification"), ("diabetes", 10, 1, "regression"),
])
def test_default_manifests(name: str, features: int, out: int, task: str) -> None:
    m = M.default_manifest(name)
    assert m.task == task and len(m.features) == features and m.output_width == out
    assert m.layers[0]["in_features"] == features
    linear = [layer for layer in m.layers if layer["type"] == "Linear"]
    assert linear[-1]["out_features"] == out
    assert m.higher_is_better is (task == "classification")
    if name == "diabetes":
        assert [layer["type"] for layer in m.layers] == ["Linear"]  # a linear model
    assert M.Manifest.from_json(m.to_json()) == m


def test_unknown_dataset_is_refused() -> None:
    with pytest.raises(ValidationError, match="no default manifest"):
        M.default_manifest("mnist")


def test_canonical_json_is_stable_and_independent_of_input_form(digits: M.Manifest) -> None:
    data = digits.to_json()
    assert data == digits.to_json()
    assert M.Manifest.from_json(data).to_json() == data
    # sorted keys, no whitespace, UTF-8
    assert b" " not in data.replace(b"mean radius", b"")
    assert list(json.loads(data)) == sorted(json.loads(data))
    # a reordered, pretty-printed, defaults-omitted variant canonicalises to the same bytes
    d = digits.to_dict()
    for layer in d["layers"]:
        if layer["type"] == "Linear":
            del layer["bias"]  # default True
    pretty = json.dumps(dict(reversed(list(d.items()))), indent=2).encode()
    assert M.Manifest.from_json(pretty).to_json() == data


def test_canonical_json_utf8_and_numbers() -> None:
    m = M.Manifest.from_json(_bytes(_small(name="modèle", training={"lr": 1})))
    out = m.to_json()
    assert "modèle".encode() in out  # not \u-escaped
    assert json.loads(out)["training"]["lr"] == 1.0 and b'"lr":1.0' in out


def test_higher_is_better() -> None:
    assert M.Manifest.from_json(_bytes(_small())).higher_is_better is True
    reg = _small(task="regression", num_classes=None, loss="mse", metric="mse",
                 layers=[{"type": "Linear", "in_features": 3, "out_features": 1}])
    assert M.Manifest.from_json(_bytes(reg)).higher_is_better is False
    assert M.Manifest.from_json(_bytes(_small(metric="cross_entropy"))).higher_is_better is False


BAD_MANIFESTS = [
    ("unknown layer", lambda d: d["layers"].insert(1, {"type": "Conv3d"}), "unknown layer type 'Conv3d'"),
    ("batchnorm", lambda d: d["layers"].insert(1, {"type": "BatchNorm1d"}), "use GroupNorm"),
    ("unknown kwarg", lambda d: d["layers"][0].update(activation="gelu"), "unknown argument"),
    ("dropout p=1", lambda d: d["layers"].insert(1, {"type": "Dropout", "p": 1.0}), "out of range"),
    ("width 0", lambda d: d["layers"][0].update(out_features=0), "out of range"),
    ("bool as int", lambda d: d["layers"][0].update(in_features=True), "must be an integer"),
    ("float as int", lambda d: d["layers"][0].update(in_features=3.0), "must be an integer"),
    ("first in != features", lambda d: d["layers"][0].update(in_features=5), "does not match the number of features"),
    ("chain mismatch", lambda d: d["layers"][2].update(in_features=5), "previous Linear layer"),
    ("last out != classes", lambda d: d["layers"][2].update(out_features=3), "must equal num_classes"),
    ("layernorm width", lambda d: d["layers"].insert(1, {"type": "LayerNorm", "normalized_shape": 3}),
     "normalized_shape=3"),
    ("no linear", lambda d: d.update(layers=[{"type": "ReLU"}]), "at least one Linear"),
    ("too many layers", lambda d: d["layers"][1:2] and d.update(layers=d["layers"][:1] + [{"type": "ReLU"}] * 70
                                                                + d["layers"][2:]), "at most"),
    ("oversized weights", lambda d: d.update(max_weight_bytes=10), "more than max_weight_bytes"),
    ("weights ceiling", lambda d: d.update(max_weight_bytes=1 << 40), "max_weight_bytes"),
    ("wide layer", lambda d: d["layers"][0].update(out_features=100_000), "out of range"),
    ("wrong loss", lambda d: d.update(loss="mse"), "'loss'"),
    ("wrong metric", lambda d: d.update(metric="f1"), "'metric'"),
    ("metric of the other task", lambda d: d.update(metric="mse"), "one of 'accuracy', 'cross_entropy'"),
    ("bad task", lambda d: d.update(task="ranking"), "'task'"),
    ("num_classes 1", lambda d: d.update(num_classes=1), "num_classes"),
    ("unknown key", lambda d: d.update(script="rm -rf /"), "unknown key"),
    ("missing key", lambda d: d.pop("layers"), "missing required key"),
    ("duplicate feature", lambda d: d.update(features=["a", "a", "c"]), "repeats"),
    ("target is feature", lambda d: d.update(target="a"), "also listed as a feature"),
    ("normalization length", lambda d: d.update(normalization={"mean": [0, 0], "std": [1, 1]}), "list of 3"),
    ("normalization zero std", lambda d: d.update(normalization={"mean": [0, 0, 0], "std": [1, 0, 1]}),
     "'std' must be between"),
    ("normalization tiny std", lambda d: d.update(normalization={"mean": [0, 0, 0], "std": [1, 1e-300, 1]}),
     "'std' must be between"),
    ("normalization huge mean", lambda d: d.update(normalization={"mean": [0, 1e300, 0], "std": [1, 1, 1]}),
     "'mean' must lie within"),
    ("normalization string", lambda d: d.update(normalization={"mean": [0, "1", 0], "std": [1, 1, 1]}),
     "must be a number"),
    ("training unknown", lambda d: d.update(training={"momentum": 0.9}), "unknown key"),
    ("training optimizer", lambda d: d.update(training={"optimizer": "lbfgs"}), "optimizer"),
    ("training lr 0", lambda d: d.update(training={"lr": 0}), "out of range"),
    ("name control chars", lambda d: d.update(name="a\nb"), "control characters"),
]


@pytest.mark.parametrize("label,mutate,message", BAD_MANIFESTS, ids=[b[0] for b in BAD_MANIFESTS])
def test_manifest_rejects(label: str, mutate, message: str) -> None:
    d = _small()
    mutate(d)
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        M.Manifest.from_json(_bytes(d))


@pytest.mark.parametrize("raw,message", [
    (b"not json", "not valid JSON"),
    (b"\xff\xfe", "not UTF-8"),
    (b"[1, 2]", "must be a JSON object"),
    (b'{"name": "a", "name": "b"}', "repeats the key 'name'"),
    (_bytes(_small()).replace(b'"num_classes": 2', b'"num_classes": NaN'), "NaN"),
    (b" " * (M.MAX_MANIFEST_BYTES + 1), "at most"),
    (b'{"name": ' + b"9" * 5000 + b"}", "not valid JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply|not valid JSON"),
])
def test_manifest_rejects_bad_json(raw: bytes, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        M.Manifest.from_json(raw)


def test_manifest_is_frozen(digits: M.Manifest) -> None:
    with pytest.raises(AttributeError):
        digits.name = "x"  # type: ignore[misc]


@settings(max_examples=25, deadline=None)
@given(widths=st.lists(st.integers(1, 24), min_size=0, max_size=3), n_features=st.integers(1, 8),
       classes=st.integers(2, 6), dropout=st.sampled_from([None, 0.0, 0.25]))
def test_any_valid_mlp_round_trips_canonically(widths, n_features, classes, dropout) -> None:
    layers = []
    dims = [n_features, *widths, classes]
    for i in range(len(dims) - 1):
        layers.append({"type": "Linear", "in_features": dims[i], "out_features": dims[i + 1]})
        if i < len(dims) - 2:
            layers.append({"type": "Tanh"})
            if dropout is not None:
                layers.append({"type": "Dropout", "p": dropout})
    d = _small(features=[f"f{i}" for i in range(n_features)], num_classes=classes, layers=layers)
    m = M.Manifest.from_json(_bytes(d))
    data = m.to_json()
    assert M.Manifest.from_json(data).to_json() == data
    model = M.build_model(m, seed=0)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == M.parameter_shapes(m)
    assert model(torch.zeros(2, n_features)).shape == (2, classes)


# --------------------------------------------------------------------------- models


def test_build_model_is_deterministic_and_leaves_global_rng(digits: M.Manifest) -> None:
    rng = torch.random.get_rng_state()
    a, b, c = (M.model_state(M.build_model(digits, seed=s)) for s in (7, 7, 8))
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["0.weight"], c["0.weight"])
    assert M.state_to_bytes(a) == M.state_to_bytes(b)


def test_build_model_layers_and_shapes() -> None:
    d = _small(layers=[{"type": "Linear", "in_features": 3, "out_features": 4}, {"type": "LayerNorm", "normalized_shape": 4},
                       {"type": "Sigmoid"}, {"type": "Dropout", "p": 0.1},
                       {"type": "Linear", "in_features": 4, "out_features": 2, "bias": False}])
    m = M.Manifest.from_json(_bytes(d))
    model = M.build_model(m, seed=1)
    assert [type(x).__name__ for x in model] == ["Linear", "LayerNorm", "Sigmoid", "Dropout", "Linear"]
    assert M.parameter_shapes(m) == {"0.weight": (4, 3), "0.bias": (4,), "1.weight": (4,), "1.bias": (4,),
                                     "4.weight": (2, 4)}
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_with_normalization_and_prepare_inputs(digits: M.Manifest) -> None:
    X = np.random.default_rng(0).normal(3.0, 2.0, size=(200, 64)).astype(np.float32)
    X[:, 5] = 4.0  # a constant column
    m = M.with_normalization(digits, X)
    assert m.normalization is not None and m.normalization["std"][5] == 1.0
    np.testing.assert_allclose(m.normalization["mean"], X.astype(np.float64).mean(0), rtol=1e-12)
    xt = M.prepare_inputs(m, X)
    assert xt.dtype == torch.float32 and xt.is_contiguous()
    np.testing.assert_allclose(xt.numpy().mean(0)[:5], 0.0, atol=1e-5)
    np.testing.assert_allclose(xt.numpy().std(0)[:5], 1.0, atol=1e-4)
    assert M.Manifest.from_json(m.to_json()) == m
    with pytest.raises(VaultError, match="expects"):
        M.prepare_inputs(m, X[:, :10])
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(VaultError, match="NaN"):
        M.prepare_inputs(m, bad)
    with pytest.raises(VaultError, match="lie in 0..9"):
        M.prepare_targets(m, np.array([0, 10]))


# --------------------------------------------------------------------------- weights


def test_safetensors_round_trip_and_deterministic_bytes(digits: M.Manifest) -> None:
    state = M.model_state(M.build_model(digits, seed=3))
    data = M.state_to_bytes(state, {"version": "3"})
    assert data == M.state_to_bytes(dict(reversed(list(state.items()))), {"version": "3"})
    loaded = M.load_weights(digits, data)
    assert list(loaded) == list(M.parameter_shapes(digits))
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    assert M.read_metadata(data) == {"version": "3"}
    model = M.build_model(digits)
    model.load_state_dict(loaded)  # strict


def _tamper(state: dict, name: str, value: torch.Tensor) -> dict:
    out = dict(state)
    out[name] = value
    return out


@pytest.mark.parametrize("case,message", [
    ("nan", "NaN or infinite"), ("inf", "NaN or infinite"), ("shape", "has shape"),
    ("missing", "missing tensor"), ("extra", "unexpected tensor"), ("float64", "dtype"),
])
def test_load_weights_refuses(digits: M.Manifest, case: str, message: str) -> None:
    state = M.model_state(M.build_model(digits, seed=0))
    if case in ("nan", "inf"):
        w = state["2.weight"].clone()
        w[3, 4] = math.nan if case == "nan" else -math.inf
        data = M.state_to_bytes(_tamper(state, "2.weight", w))
    elif case == "shape":
        data = M.state_to_bytes(_tamper(state, "2.bias", torch.zeros(11)))
    elif case == "missing":
        data = M.state_to_bytes({k: v for k, v in state.items() if k != "0.bias"})
    elif case == "extra":
        data = M.state_to_bytes(_tamper(state, "3.weight", torch.zeros(1)))
    else:
        from safetensors.torch import save
        data = save({k: v.double() for k, v in state.items()})
    with pytest.raises(ValidationError, match=message):
        M.load_weights(digits, data)


def test_model_from_bytes(digits: M.Manifest) -> None:
    state = M.model_state(M.build_model(digits, seed=4))
    model = M.model_from_bytes(digits, M.state_to_bytes(state))
    assert all(torch.equal(model.state_dict()[k], state[k]) for k in state)


def test_load_weights_refuses_oversize_and_garbage(digits: M.Manifest) -> None:
    data = M.state_to_bytes(M.model_state(M.build_model(digits, seed=0)))
    with pytest.raises(ValidationError, match="more than the limit"):
        M.load_weights(digits, data, max_bytes=len(data) - 1)
    M.load_weights(digits, data, max_bytes=len(data))  # exactly at the limit is fine
    for garbage, message in [(b"", "only 0 bytes"), (b"\x00" * 7, "only 7 bytes"),
                             (struct.pack("<Q", 10**9) + b"{}", "does not fit"),
                             (struct.pack("<Q", 2) + b"[]", "not a JSON object"),
                             (data[:-10], "not a valid safetensors"),
                             (struct.pack("<Q", 5) + b"{bad}", "not valid JSON")]:
        with pytest.raises(M.UnreadableError, match=message):
            M.load_weights(digits, garbage)


# --------------------------------------------------------------------------- updates


def test_update_round_trip_apply_and_norm(digits: M.Manifest) -> None:
    base = M.model_state(M.build_model(digits, seed=0))
    trained = M.model_state(M.build_model(digits, seed=1))
    data = M.make_update(base, trained, {"base_version": "0", "examples": "123", "loss": "0.5"})
    delta, meta = M.read_update(digits, data)
    assert meta == {"base_version": "0", "examples": "123", "loss": "0.5"}
    for k in base:
        assert torch.equal(delta[k], trained[k] - base[k])
    applied = M.apply_update(base, delta)
    for k in base:
        torch.testing.assert_close(applied[k], trained[k], rtol=0, atol=1e-6)
    expected = math.sqrt(sum(float((trained[k].double() - base[k].double()).square().sum()) for k in base))
    assert M.update_norm(delta) == pytest.approx(expected, rel=1e-6)
    # inputs untouched
    assert all(torch.equal(a, b) for a, b in zip(base.values(), M.model_state(M.build_model(digits, seed=0)).values()))


def test_apply_update_scale_and_clip(digits: M.Manifest) -> None:
    base = M.model_state(M.build_model(digits, seed=0))
    delta = {k: torch.full_like(v, 0.5) for k, v in base.items()}
    norm = M.update_norm(delta)
    assert norm == pytest.approx(0.5 * math.sqrt(digits.parameter_count))

    def applied_norm(**kw) -> float:
        new = M.apply_update(base, delta, **kw)
        return M.update_norm({k: new[k].double() - base[k].double() for k in base})

    assert applied_norm(scale=0.5) == pytest.approx(norm * 0.5, rel=1e-5)
    assert applied_norm(max_norm=2.0) == pytest.approx(2.0, rel=1e-5)
    assert applied_norm(max_norm=2.0, scale=0.5) == pytest.approx(1.0, rel=1e-5)
    assert applied_norm(max_norm=norm * 10) == pytest.approx(norm, rel=1e-5)  # no clip below the bound
    with pytest.raises(ValidationError, match="max_norm"):
        M.apply_update(base, delta, max_norm=math.nan)
    with pytest.raises(ValidationError, match="differ"):
        M.apply_update(base, {"0.weight": delta["0.weight"]})


def test_read_update_refuses_bad_metadata_and_shapes(digits: M.Manifest) -> None:
    base = M.model_state(M.build_model(digits, seed=0))
    with pytest.raises(ValidationError, match="strings"):
        M.make_update(base, base, {"examples": 5})  # type: ignore[dict-item]
    wrong = dict(base)
    wrong["0.weight"] = torch.zeros(31, 64)
    with pytest.raises(ValidationError, match="has shape"):
        M.read_update(digits, M.state_to_bytes(wrong))
