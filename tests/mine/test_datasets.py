"""mine.datasets: bundled data, stratified splits, Dirichlet shards, CSV/NPZ tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mine import datasets as D
from mine.errors import ValidationError, VaultError


@pytest.fixture(scope="module")
def digits() -> D.Dataset:
    return D.load("digits")


@pytest.mark.parametrize("name,shape,task,ydtype", [
    ("digits", (1797, 64), "classification", np.int64),
    ("breast_cancer", (569, 30), "classification", np.int64),
    ("diabetes", (442, 10), "regression", np.float32),
])
def test_load(name: str, shape: tuple[int, int], task: str, ydtype: type) -> None:
    X, y, names, target, got_task = D.load(name)
    assert X.shape == shape and X.dtype == np.float32 and X.flags.c_contiguous
    assert y.shape == (shape[0],) and y.dtype == ydtype
    assert len(names) == shape[1] and len(set(names)) == shape[1] and target not in names
    assert got_task == task
    assert D.schema(name) == (names, target)
    if name == "diabetes":
        assert X[:, 1].min() == 1.0 and X[:, 1].max() == 2.0  # raw, unscaled features


def test_load_unknown() -> None:
    with pytest.raises(ValidationError, match="bundled datasets are"):
        D.load("imagenet")


def test_split_is_stratified_disjoint_and_deterministic(digits: D.Dataset) -> None:
    X, y = digits.X, digits.y
    s = D.train_validation_split(X, y, validation_fraction=0.2, seed=0)
    assert len(s.y_train) + len(s.y_val) == len(y)
    assert len(s.y_val) == pytest.approx(0.2 * len(y), abs=10)
    # rows are a partition of the original rows (digits rows are unique enough to match on content)
    rows = {r.tobytes() for r in np.concatenate([s.X_train, s.X_val])}
    assert rows == {r.tobytes() for r in X}
    for c in range(10):  # every class in validation, in proportion
        assert np.count_nonzero(s.y_val == c) == pytest.approx(0.2 * np.count_nonzero(y == c), abs=1)
    again = D.train_validation_split(X, y, validation_fraction=0.2, seed=0)
    assert np.array_equal(s.X_val, again.X_val) and np.array_equal(s.y_train, again.y_train)
    other = D.train_validation_split(X, y, validation_fraction=0.2, seed=1)
    assert not np.array_equal(s.y_val, other.y_val)
    X_train, y_train, X_val, y_val = s  # unpacks in documented order
    assert X_train is s.X_train and y_val is s.y_val


def test_split_regression_and_bad_fraction() -> None:
    X, y, *_ = D.load("diabetes")
    s = D.train_validation_split(X, y, validation_fraction=0.25, seed=3)
    assert len(s.y_val) == round(0.25 * len(y)) and s.y_val.dtype == np.float32
    for f in (0.0, 1.0, -0.1):
        with pytest.raises(ValidationError, match="validation_fraction"):
            D.train_validation_split(X, y, validation_fraction=f, seed=0)


@pytest.mark.parametrize("alpha", [0.1, 1.0, 100.0])
@pytest.mark.parametrize("n_shards", [1, 3, 10])
def test_dirichlet_shards_cover_every_index_exactly_once(digits: D.Dataset, alpha: float, n_shards: int) -> None:
    shards = D.dirichlet_shards(digits.y, n_shards, alpha=alpha, seed=5, min_size=10)
    assert len(shards) == n_shards
    allidx = np.concatenate(shards)
    assert np.array_equal(np.sort(allidx), np.arange(len(digits.y)))
    assert all(len(s) >= 10 and s.dtype == np.int64 and np.all(np.diff(s) > 0) for s in shards)


def test_dirichlet_shards_regression_cover_and_skew() -> None:
    _, y, *_ = D.load("diabetes")
    shards = D.dirichlet_shards(y, 4, alpha=0.3, seed=1, min_size=5)
    assert np.array_equal(np.sort(np.concatenate(shards)), np.arange(len(y)))
    means = [float(y[s].mean()) for s in shards]
    assert max(means) - min(means) > 20  # quantile-bin split makes target ranges differ


def _label_skew(y: np.ndarray, shards: list[np.ndarray]) -> float:
    """Mean over shards of the largest class share (1/10 = IID for digits, 1 = one class per shard)."""
    return float(np.mean([np.bincount(y[s], minlength=10).max() / len(s) for s in shards]))


def test_dirichlet_alpha_controls_skew_and_seed_determinism(digits: D.Dataset) -> None:
    skewed = D.dirichlet_shards(digits.y, 8, alpha=0.1, seed=2, min_size=5)
    iid = D.dirichlet_shards(digits.y, 8, alpha=1000.0, seed=2, min_size=5)
    assert _label_skew(digits.y, skewed) > 0.4 > 0.15 > _label_skew(digits.y, iid)
    again = D.dirichlet_shards(digits.y, 8, alpha=0.1, seed=2, min_size=5)
    assert all(np.array_equal(a, b) for a, b in zip(skewed, again))


@pytest.mark.parametrize("kwargs,message", [
    ({"n_shards": 0, "alpha": 1.0}, "n_shards"),
    ({"n_shards": 2, "alpha": 0.0}, "alpha"),
    ({"n_shards": 10, "alpha": 1.0, "min_size": 200}, "cannot give"),
    ({"n_shards": 50, "alpha": 0.01, "min_size": 30, "max_tries": 5}, "raise alpha"),
])
def test_dirichlet_shards_bad_arguments(digits: D.Dataset, kwargs: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        D.dirichlet_shards(digits.y, seed=0, **kwargs)


# --------------------------------------------------------------------------- files


def test_csv_round_trip_is_exact(tmp_path: Path) -> None:
    X, y, names, target, _ = D.load("breast_cancer")
    p = tmp_path / "bc.csv"
    D.write_csv(p, X, y, names, target)
    header = p.read_text().splitlines()[0]
    assert header.startswith("mean radius,mean texture,") and header.endswith(",benign")
    X2, y2, names2 = D.read_table(p, target=target)
    assert names2 == names and X2.dtype == np.float32 and y2.dtype == np.int64
    assert np.array_equal(X2, X) and np.array_equal(y2, y)
    # regression labels with fractions come back float32
    Xr = np.arange(6, dtype=np.float32).reshape(3, 2) / 3
    D.write_csv(tmp_path / "r.csv", Xr, np.array([0.5, 1.25, 2.0], dtype=np.float32), ["a", "b"], "t")
    X3, y3, _ = D.read_table(tmp_path / "r.csv", target="t")
    assert np.array_equal(X3, Xr) and y3.dtype == np.float32 and y3.tolist() == [0.5, 1.25, 2.0]


def test_csv_target_may_be_any_column(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    p.write_text("label,x1,x2\n1,0.5,2\n0,1.5,3\n")
    X, y, names = D.read_table(p, target="label")
    assert names == ["x1", "x2"] and y.tolist() == [1, 0] and X.tolist() == [[0.5, 2.0], [1.5, 3.0]]


def test_npz_round_trip_and_column_layout(tmp_path: Path, digits: D.Dataset) -> None:
    p = tmp_path / "d.npz"
    D.write_npz(p, digits.X, digits.y, digits.feature_names, digits.target_name)
    X, y, names = D.read_table(p, target="digit")
    assert np.array_equal(X, digits.X) and np.array_equal(y, digits.y) and names == digits.feature_names
    with pytest.raises(VaultError, match="the target is 'digit'"):
        D.read_table(p, target="label")
    cols = tmp_path / "c.npz"
    np.savez(cols, b=np.array([1.0, 2.0]), label=np.array([0, 1]), a=np.array([3, 4]))
    X, y, names = D.read_table(cols, target="label")
    assert names == ["b", "a"] and X.tolist() == [[1.0, 3.0], [2.0, 4.0]] and y.tolist() == [0, 1]


@pytest.mark.parametrize("content,message", [
    ("", "empty"),
    ("a,b,t\n", "no data rows"),
    ("a,b\n1,2\n", "no target column 't'"),
    ("a,b,t\n1,x,0\n", "line 2, column 'b': 'x' is not a number"),
    ("a,b,t\n1,2,0\n1,2\n", "line 3 has 2 values"),
    ("a,b,t\n1,nan,0\n", "NaN or infinite"),
    ("a,b,t\n1,,0\n", "is not a number"),
    ("a,a,t\n1,2,0\n", "repeats a column"),
    ("t\n1\n2\n", "no feature columns"),
])
def test_read_csv_errors(tmp_path: Path, content: str, message: str) -> None:
    p = tmp_path / "bad.csv"
    p.write_text(content)
    with pytest.raises(VaultError, match=message):
        D.read_table(p, target="t")


def test_read_table_other_errors(tmp_path: Path) -> None:
    with pytest.raises(VaultError, match="no such file"):
        D.read_table(tmp_path / "missing.csv", target="t")
    (tmp_path / "x.parquet").write_bytes(b"PAR1")
    with pytest.raises(VaultError, match="unsupported file type"):
        D.read_table(tmp_path / "x.parquet", target="t")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(VaultError, match="not a readable NPZ"):
        D.read_table(tmp_path / "bad.npz", target="t")
    np.savez(tmp_path / "obj.npz", X=np.array([[1, 2]], dtype=object), y=np.array([1]),
             feature_names=np.array(["a", "b"]))
    with pytest.raises(VaultError, match="pickle"):
        D.read_table(tmp_path / "obj.npz", target="t")
    np.savez(tmp_path / "str.npz", a=np.array(["x", "y"]), t=np.array([0, 1]))
    with pytest.raises(VaultError, match="numeric"):
        D.read_table(tmp_path / "str.npz", target="t")
    (tmp_path / "latin.csv").write_bytes("é,t\n1,0\n".encode("latin-1"))
    with pytest.raises(VaultError, match="UTF-8"):
        D.read_table(tmp_path / "latin.csv", target="t")


def test_select_features() -> None:
    X = np.array([[1.0, 2.0, 3.0]], dtype=np.float32)
    assert D.select_features(X, ["a", "b", "c"], ["c", "a"]).tolist() == [[3.0, 1.0]]
    with pytest.raises(VaultError, match=r"lacks feature column\(s\) \['z'\]"):
        D.select_features(X, ["a", "b", "c"], ["a", "z"])


def test_writers_refuse_bad_columns(tmp_path: Path) -> None:
    X = np.zeros((2, 2), dtype=np.float32)
    with pytest.raises(ValidationError, match="2 columns"):
        D.write_csv(tmp_path / "a.csv", X, np.zeros(2), ["a"], "t")
    with pytest.raises(ValidationError, match="unique"):
        D.write_npz(tmp_path / "a.npz", X, np.zeros(2), ["a", "t"], "t")
