"""mine.layers: every whitelisted layer builds from JSON, trains, round-trips through safetensors and
refuses bad arguments; cost bounds refuse a manifest before anything is allocated; torch import."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import torch

from mine import layers as L
from mine import model as M
from mine.errors import ValidationError
from mine.train import train


def _manifest(layers: list[dict[str, Any]], n_features: int = 16, *, task: str = "classification",
              **changes: Any) -> M.Manifest:
    d: dict[str, Any] = {
        "name": "probe", "task": task, "features": [f"f{i}" for i in range(n_features)], "target": "t",
        "num_classes": 3 if task == "classification" else None, "layers": layers,
        "loss": "cross_entropy" if task == "classification" else "mse",
        "metric": "accuracy" if task == "classification" else "mse",
    }
    d.update(changes)
    return M.Manifest.from_json(json.dumps(d).encode())


IMG = {"type": "Unflatten", "unflattened_size": [1, 4, 4]}
SEQ = {"type": "Unflatten", "unflattened_size": [2, 8]}
HEAD = [{"type": "Flatten"}]

#: One small model per new layer, all over 16 features and ending in 3 logits.
CASES: dict[str, list[dict[str, Any]]] = {
    "Conv2d": [IMG, {"type": "Conv2d", "in_channels": 1, "out_channels": 4, "kernel_size": 3, "padding": 1},
               *HEAD, {"type": "Linear", "in_features": 64, "out_features": 3}],
    "Conv1d": [SEQ, {"type": "Conv1d", "in_channels": 2, "out_channels": 3, "kernel_size": 3, "stride": 2},
               *HEAD, {"type": "Linear", "in_features": 9, "out_features": 3}],
    "MaxPool2d": [IMG, {"type": "Conv2d", "in_channels": 1, "out_channels": 2, "kernel_size": [3, 1], "padding": [1, 0]},
                  {"type": "MaxPool2d", "kernel_size": 2}, *HEAD, {"type": "Linear", "in_features": 8, "out_features": 3}],
    "AvgPool2d": [IMG, {"type": "AvgPool2d", "kernel_size": 2, "stride": 1}, *HEAD,
                  {"type": "Linear", "in_features": 9, "out_features": 3}],
    "MaxPool1d": [SEQ, {"type": "MaxPool1d", "kernel_size": 2}, *HEAD, {"type": "Linear", "in_features": 8, "out_features": 3}],
    "AvgPool1d": [SEQ, {"type": "AvgPool1d", "kernel_size": 3, "padding": 1}, *HEAD,
                  {"type": "Linear", "in_features": 6, "out_features": 3}],
    "AdaptiveAvgPool2d": [IMG, {"type": "Conv2d", "in_channels": 1, "out_channels": 4, "kernel_size": 2},
                          {"type": "AdaptiveAvgPool2d", "output_size": 1}, *HEAD,
                          {"type": "Linear", "in_features": 4, "out_features": 3}],
    "GroupNorm": [IMG, {"type": "Conv2d", "in_channels": 1, "out_channels": 4, "kernel_size": 3},
                  {"type": "GroupNorm", "num_groups": 2, "num_channels": 4}, *HEAD,
                  {"type": "Linear", "in_features": 16, "out_features": 3}],
    "GELU": [{"type": "Linear", "in_features": 16, "out_features": 8}, {"type": "GELU", "approximate": "tanh"},
             {"type": "Linear", "in_features": 8, "out_features": 3}],
    "Embedding": [{"type": "Embedding", "num_embeddings": 5, "embedding_dim": 2}, *HEAD,
                  {"type": "Linear", "in_features": 32, "out_features": 3}],
}


def _data(manifest: M.Manifest, n: int = 96) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    if manifest.token_inputs:
        X = rng.integers(0, 5, size=(n, 16)).astype(np.float32)
        y = (X[:, 0] % 3).astype(np.int64)
    else:
        X = rng.normal(size=(n, 16)).astype(np.float32)
        y = (X[:, :4].sum(axis=1) > 0).astype(np.int64) + (X[:, 5] > 1).astype(np.int64)
    return X, y


@pytest.mark.parametrize("kind", sorted(CASES))
def test_layer_builds_trains_and_round_trips(kind: str) -> None:
    # Prepare: the manifest from JSON, canonical
    manifest = _manifest(CASES[kind])
    assert kind in [layer["type"] for layer in manifest.layers]
    assert M.Manifest.from_json(manifest.to_json()).to_json() == manifest.to_json()
    model = M.build_model(manifest, seed=1)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == M.parameter_shapes(manifest)
    X, y = _data(manifest)
    before = M.model_state(model)
    # Execute: train, then serialise and load back
    result = train(model, X, y, manifest, epochs=3, lr=0.05, batch_size=16, seed=0)
    after = M.model_state(model)
    data = M.state_to_bytes(after)
    loaded = M.model_from_bytes(manifest, data)
    # Assert: training moved the weights, the loaded model computes the same outputs
    assert any(not torch.equal(before[k], after[k]) for k in after)
    assert np.isfinite(result.loss)
    xt = M.prepare_inputs(manifest, X)
    with torch.no_grad():
        assert torch.equal(loaded(xt), model.eval()(xt))
    assert M.load_weights(manifest, data).keys() == after.keys()


@pytest.mark.filterwarnings("ignore:Full backward hook is firing")
@pytest.mark.parametrize("kind", ["Conv2d", "GroupNorm", "Embedding", "Conv1d"])
def test_layer_trains_with_opacus_per_sample_gradients(kind: str) -> None:
    from opacus import GradSampleModule

    manifest = _manifest(CASES[kind])
    X, y = _data(manifest, n=8)
    gsm = GradSampleModule(M.build_model(manifest, seed=0))
    loss = torch.nn.functional.cross_entropy(gsm(M.prepare_inputs(manifest, X)), M.prepare_targets(manifest, y))
    loss.backward()
    for p in gsm.parameters():
        assert p.grad_sample is not None and p.grad_sample.shape[0] == 8


BAD_LAYERS = [
    ("conv channels", CASES["Conv2d"][:1] + [{**CASES["Conv2d"][1], "in_channels": 2}], "in_channels=2 does not match"),
    ("conv kernel too big", [IMG, {"type": "Conv2d", "in_channels": 1, "out_channels": 1, "kernel_size": 5}],
     "does not fit"),
    ("conv kernel bound", [IMG, {"type": "Conv2d", "in_channels": 1, "out_channels": 1, "kernel_size": 65}], "out of range"),
    ("conv kernel float", [IMG, {"type": "Conv2d", "in_channels": 1, "out_channels": 1, "kernel_size": 2.0}],
     "integer or a list of 2"),
    ("conv without unflatten", [{"type": "Conv2d", "in_channels": 1, "out_channels": 1, "kernel_size": 1}],
     "put an Unflatten"),
    ("conv groups", [SEQ, {"type": "Conv1d", "in_channels": 2, "out_channels": 3, "kernel_size": 1, "groups": 2}],
     "must divide"),
    ("conv1d pair", [SEQ, {"type": "Conv1d", "in_channels": 2, "out_channels": 3, "kernel_size": [1, 1]}],
     "must be an integer"),
    ("unflatten size", [{"type": "Unflatten", "unflattened_size": [1, 3, 5]}], "has 15 elements"),
    ("unflatten dim", [{"type": "Unflatten", "dim": 2, "unflattened_size": [1, 4, 4]}], "out of range"),
    ("unflatten rank", [{"type": "Unflatten", "unflattened_size": [1, 1, 4, 4]}], "1 to 3 integers"),
    ("pool padding", [IMG, {"type": "MaxPool2d", "kernel_size": 2, "padding": 2}], "at most half"),
    ("pool on vector", [{"type": "MaxPool1d", "kernel_size": 2}], "put an Unflatten"),
    ("adaptive zero", [IMG, {"type": "AdaptiveAvgPool2d", "output_size": 0}], "out of range"),
    ("groupnorm divides", [IMG, {"type": "GroupNorm", "num_groups": 2, "num_channels": 3}], "must divide"),
    ("groupnorm channels", [IMG, {"type": "GroupNorm", "num_groups": 1, "num_channels": 2}], "num_channels=2 does not match"),
    ("groupnorm eps", [IMG, {"type": "GroupNorm", "num_groups": 1, "num_channels": 1, "eps": 0}], "out of range"),
    ("gelu approximate", [{"type": "GELU", "approximate": "erf"}], "must be one of"),
    ("embedding not first", [{"type": "Linear", "in_features": 16, "out_features": 4},
                             {"type": "Embedding", "num_embeddings": 4, "embedding_dim": 2}], "must be the first layer"),
    ("embedding vocab", [{"type": "Embedding", "num_embeddings": 0, "embedding_dim": 2}], "out of range"),
    ("softmax", [{"type": "Softmax"}], "unknown layer type"),
    ("batchnorm2d", [IMG, {"type": "BatchNorm2d", "num_features": 1}], "use GroupNorm"),
    ("output not flat", [IMG, {"type": "Conv2d", "in_channels": 1, "out_channels": 3, "kernel_size": 4}],
     "end with Flatten"),
]


@pytest.mark.parametrize("label,layers,message", BAD_LAYERS, ids=[b[0] for b in BAD_LAYERS])
def test_bad_layer_arguments_are_refused(label: str, layers: list[dict[str, Any]], message: str) -> None:
    tail = [] if any(layer["type"] == "Linear" for layer in layers) else [{"type": "Flatten"},
                                                                           {"type": "Linear", "in_features": 1,
                                                                            "out_features": 3}]
    if label == "output not flat":
        tail = []
    with pytest.raises(ValidationError, match=message):
        _manifest(layers + tail)


def test_embedding_manifest_refuses_normalization_and_out_of_vocabulary_tokens() -> None:
    with pytest.raises(ValidationError, match="normalization' must be null"):
        _manifest(CASES["Embedding"], normalization={"mean": [0.0] * 16, "std": [1.0] * 16})
    manifest = _manifest(CASES["Embedding"])
    from mine.errors import VaultError
    with pytest.raises(VaultError, match="0..4"):
        M.prepare_inputs(manifest, np.full((2, 16), 5.0))


# --------------------------------------------------------------------------- cost bounds


@pytest.fixture
def no_building(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to construct a torch module fails the test: refusal must come first."""
    def boom(*_a: Any, **_k: Any) -> None:
        raise AssertionError("a module was built for a manifest that should have been refused")
    monkeypatch.setattr(L, "layer_module", boom)
    for name in ("Conv2d", "Linear", "Conv1d"):
        monkeypatch.setattr(torch.nn, name, boom)


def test_flop_bomb_is_refused_before_building(no_building: None) -> None:
    # 8100 inputs padded to 130x130, then a 128->128 3x3 convolution: ~5e9 FLOPs per example, 0.6 MB of weights
    layers = [{"type": "Unflatten", "unflattened_size": [1, 90, 90]},
              {"type": "Conv2d", "in_channels": 1, "out_channels": 128, "kernel_size": 3, "padding": 21},
              {"type": "Conv2d", "in_channels": 128, "out_channels": 128, "kernel_size": 3, "padding": 1},
              {"type": "AdaptiveAvgPool2d", "output_size": 1}, {"type": "Flatten"},
              {"type": "Linear", "in_features": 128, "out_features": 3}]
    with pytest.raises(ValidationError, match="floating-point operations per example"):
        _manifest(layers, n_features=8100)


def test_memory_bomb_is_refused_before_building(no_building: None) -> None:
    layers = [{"type": "Unflatten", "unflattened_size": [1, 64, 64]},
              {"type": "Conv2d", "in_channels": 1, "out_channels": 32, "kernel_size": 3, "padding": 1},
              {"type": "AdaptiveAvgPool2d", "output_size": 1}, {"type": "Flatten"},
              {"type": "Linear", "in_features": 32, "out_features": 3}]
    ok = _manifest(layers, n_features=4096, training={"batch_size": 32})
    assert ok.train_memory_bytes < M.MAX_TRAIN_MEMORY_BYTES
    with pytest.raises(ValidationError, match="MiB"):
        _manifest(layers, n_features=4096, training={"batch_size": 1 << 16})


def test_weight_bomb_is_refused_before_building(no_building: None) -> None:
    layers = [{"type": "Unflatten", "unflattened_size": [16, 16, 16]},
              {"type": "Conv2d", "in_channels": 16, "out_channels": 8192, "kernel_size": 16},
              {"type": "Flatten"}, {"type": "Linear", "in_features": 8192, "out_features": 3}]
    with pytest.raises(ValidationError, match="max_weight_bytes"):
        _manifest(layers, n_features=4096)


def test_huge_activation_is_refused(no_building: None) -> None:
    layers = [{"type": "Unflatten", "unflattened_size": [2, 32, 64]},
              {"type": "AdaptiveAvgPool2d", "output_size": 4096}, {"type": "Flatten"},
              {"type": "Linear", "in_features": 4, "out_features": 3}]
    with pytest.raises(ValidationError, match="values per example"):
        _manifest(layers, n_features=4096)


def test_cnn_evaluates_in_bounded_chunks() -> None:
    manifest = M.default_manifest("digits", "cnn")
    assert manifest.eval_chunk_rows == 8192  # small activations: the usual chunk
    wide = [{"type": "Unflatten", "unflattened_size": [1, 64, 64]},
            {"type": "Conv2d", "in_channels": 1, "out_channels": 64, "kernel_size": 3, "padding": 1},
            {"type": "AdaptiveAvgPool2d", "output_size": 1}, {"type": "Flatten"},
            {"type": "Linear", "in_features": 64, "out_features": 3}]
    big = _manifest(wide, n_features=4096)
    assert big.eval_chunk_rows * 4 * 64 * 64 * 64 <= 256 << 20


# --------------------------------------------------------------------------- torch import


def test_sequential_imports_to_an_equivalent_manifest() -> None:
    nn = torch.nn
    net = nn.Sequential(nn.Unflatten(1, (1, 4, 4)), nn.Conv2d(1, 4, 3, padding=1), nn.GroupNorm(2, 4), nn.GELU(),
                        nn.AvgPool2d(2), nn.Flatten(), nn.Dropout(0.1), nn.Linear(16, 3))
    manifest, state = M.import_sequential(net, name="imported", features=[f"f{i}" for i in range(16)], target="t",
                                          task="classification", num_classes=3)
    rebuilt = M.model_from_bytes(manifest, M.state_to_bytes(state))
    x = torch.randn(5, 16)
    with torch.no_grad():
        assert torch.allclose(rebuilt.eval()(x), net.eval()(x))


@pytest.mark.parametrize("module,name", [
    (torch.nn.BatchNorm1d(16), "BatchNorm1d"),
    (torch.nn.LSTM(16, 4), "LSTM"),
    (torch.nn.Softmax(dim=1), "Softmax"),
])
def test_sequential_with_a_layer_outside_the_whitelist_is_refused_by_name(module: torch.nn.Module, name: str) -> None:
    net = torch.nn.Sequential(torch.nn.Linear(16, 16), module, torch.nn.Linear(16, 3))
    with pytest.raises(ValidationError, match=f"module 1 \\({name}\\) is not an allowed layer"):
        M.import_sequential(net, name="x", features=[f"f{i}" for i in range(16)], target="t",
                            task="classification", num_classes=3)


def test_subclass_of_a_whitelisted_layer_is_refused() -> None:
    class Sneaky(torch.nn.Linear):
        def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
            return super().forward(x) * 2

    net = torch.nn.Sequential(Sneaky(16, 3))
    with pytest.raises(ValidationError, match="Sneaky"):
        M.import_sequential(net, name="x", features=[f"f{i}" for i in range(16)], target="t",
                            task="classification", num_classes=3)


# --------------------------------------------------------------------------- shape propagation vs torch

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_small = st.integers(1, 4)
_channels = st.sampled_from([2, 4])
_layer = st.one_of(
    st.builds(lambda c, k, s, p, d, g: {"type": "Conv2d", "in_channels": c, "out_channels": c * g // g, "kernel_size": k,
                                        "stride": s, "padding": p, "dilation": d},
              _channels, st.one_of(_small, st.lists(_small, min_size=2, max_size=2)), st.integers(1, 2),
              st.integers(0, 2), st.integers(1, 2), st.just(1)),
    st.builds(lambda c, o, k, s, p: {"type": "Conv1d", "in_channels": c, "out_channels": o, "kernel_size": k,
                                     "stride": s, "padding": p}, _channels, _channels, _small, st.integers(1, 2),
              st.integers(0, 2)),
    st.builds(lambda t, k, s, p: {"type": t, "kernel_size": k, "stride": s, "padding": p},
              st.sampled_from(["MaxPool1d", "MaxPool2d", "AvgPool1d", "AvgPool2d"]), st.integers(1, 3),
              st.one_of(st.none(), st.integers(1, 2)), st.integers(0, 1)),
    st.builds(lambda o: {"type": "AdaptiveAvgPool2d", "output_size": o}, st.integers(1, 3)),
    st.builds(lambda g, c: {"type": "GroupNorm", "num_groups": g, "num_channels": c}, st.sampled_from([1, 2]),
              st.sampled_from([2, 4])),
    st.builds(lambda n: {"type": "LayerNorm", "normalized_shape": n}, _small),
    st.builds(lambda i, o: {"type": "Linear", "in_features": i, "out_features": o}, _small, _small),
    st.builds(lambda s: {"type": "Unflatten", "unflattened_size": s}, st.lists(_small, min_size=1, max_size=3)),
    st.sampled_from([{"type": "Flatten"}, {"type": "ReLU"}, {"type": "GELU"}, {"type": "Dropout", "p": 0.1}]),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_layer, min_size=1, max_size=5), st.sampled_from([(8,), (2, 6), (2, 4, 4), (4, 5), (4, 3, 3)]))
def test_shape_walk_agrees_with_torch(specs: list[dict[str, Any]], input_shape: tuple[int, ...]) -> None:
    """Whatever the integer walk accepts, torch runs with exactly that output shape; what it refuses
    is refused with a ValidationError (never another exception)."""
    try:
        layers = [L.normalize_layer(i, s) for i, s in enumerate(specs)]
        cost = L.walk(layers, input_shape)
    except ValidationError:
        return
    model = torch.nn.Sequential(*(L.layer_module(s) for s in layers)).eval()
    with torch.no_grad():
        out = model(torch.randn(2, *input_shape))
    assert tuple(out.shape) == (2, *cost.output_shape)
    assert sum(p.numel() for p in model.parameters()) == cost.parameters


def test_max_train_batch_fits_the_memory_bound() -> None:
    for manifest in (M.default_manifest("digits"), M.default_manifest("digits", "cnn")):
        fits = M.Manifest.from_dict({**manifest.to_dict(), "training": {"batch_size": min(manifest.max_train_batch, 1 << 20)}})
        assert fits.train_memory_bytes <= M.MAX_TRAIN_MEMORY_BYTES
        if manifest.max_train_batch < 1 << 20:
            with pytest.raises(ValidationError, match="MiB"):
                M.Manifest.from_dict({**manifest.to_dict(), "training": {"batch_size": manifest.max_train_batch + 1}})


def test_training_dp_settings_are_kept() -> None:
    d = M.default_manifest("digits").to_dict()
    d["training"]["dp"] = {"noise_multiplier": 1.1, "max_grad_norm": 1.0}
    assert M.Manifest.from_dict(d).training["dp"] == {"noise_multiplier": 1.1, "max_grad_norm": 1.0}
    d["training"]["dp"] = {"noise_multiplier": [1]}
    with pytest.raises(ValidationError, match="training.dp"):
        M.Manifest.from_dict(d)
