"""Bundled datasets, splits, non-IID shards and the tabular file formats a vault accepts.

Only scikit-learn's *bundled* datasets are used (nothing is downloaded): ``digits``,
``breast_cancer`` and ``diabetes`` (raw, unscaled features).

File formats read by :func:`read_table`
---------------------------------------
* **CSV** (``.csv``): a header row of column names, then one row per example; every cell a
  finite number. The ``target`` column is the label; every other column is a feature, in file
  order. Written by :func:`write_csv` (floats with 9 significant digits, which round-trips
  float32 exactly).
* **NPZ** (``.npz``, loaded with ``allow_pickle=False``), either
  - *matrix layout* (what :func:`write_npz` writes): ``X`` (2-D numeric), ``y`` (1-D numeric),
    ``feature_names`` (1-D string array, one per column of ``X``) and optionally ``target_name``
    (0-d string); the ``target`` argument must equal ``target_name`` when present; or
  - *column layout*: one 1-D numeric array per column, named by the column; ``target`` names
    the label array, all other arrays are features in archive order.

Labels come back as int64 when every value is integral, else float32; features as float32.
"""

from __future__ import annotations

import csv
import functools
import os
import zipfile
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from mine.errors import ValidationError, VaultError

__all__ = [
    "DATASETS",
    "Dataset",
    "Split",
    "dirichlet_shards",
    "load",
    "read_table",
    "schema",
    "select_features",
    "train_validation_split",
    "write_csv",
    "write_npz",
]

#: Names accepted by :func:`load`.
DATASETS: tuple[str, ...] = ("digits", "breast_cancer", "diabetes")

_TARGETS = {"digits": "digit", "breast_cancer": "benign", "diabetes": "progression"}


class Dataset(NamedTuple):
    """A loaded dataset; unpacks as ``X, y, feature_names, target_name, task``."""

    X: np.ndarray
    y: np.ndarray
    feature_names: list[str]
    target_name: str
    task: str


class Split(NamedTuple):
    """A train/validation split; unpacks as ``X_train, y_train, X_val, y_val``."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray


def _sklearn(name: str):  # noqa: ANN202 - sklearn Bunch
    from sklearn import datasets as skd

    if name == "digits":
        return skd.load_digits()
    if name == "breast_cancer":
        return skd.load_breast_cancer()
    if name == "diabetes":
        return skd.load_diabetes(scaled=False)
    raise ValidationError(f"unknown dataset {name!r}; bundled datasets are {', '.join(DATASETS)}")


def load(name: str) -> Dataset:
    """Load a bundled scikit-learn dataset.

    Returns ``(X float32 (n, d), y, feature_names, target_name, task)`` where ``y`` is int64 class
    indices for classification (``digits``: 0..9, ``breast_cancer``: 0 malignant / 1 benign) and
    float32 for regression (``diabetes``: disease progression, raw units).
    """
    bunch = _sklearn(name)
    X = np.ascontiguousarray(bunch.data, dtype=np.float32)
    names = [str(f) for f in bunch.feature_names]
    if name == "diabetes":
        return Dataset(X, np.asarray(bunch.target, dtype=np.float32), names, _TARGETS[name], "regression")
    return Dataset(X, np.asarray(bunch.target, dtype=np.int64), names, _TARGETS[name], "classification")


def schema(name: str) -> tuple[list[str], str]:
    """``(feature_names, target_name)`` of a bundled dataset."""
    names, target = _schema(name)
    return list(names), target


@functools.lru_cache(maxsize=None)
def _schema(name: str) -> tuple[tuple[str, ...], str]:
    ds = load(name)
    return tuple(ds.feature_names), ds.target_name


def _check_xy(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    X, y = np.asarray(X), np.asarray(y)
    if X.ndim != 2 or y.ndim != 1 or len(X) != len(y):
        raise ValidationError(f"X must be 2-D and y 1-D with the same number of rows; got {X.shape} and {y.shape}")
    return X, y


def _is_classification(y: np.ndarray, task: str | None) -> bool:
    if task is None:
        return y.dtype.kind in "biu"
    if task not in ("classification", "regression"):
        raise ValidationError(f"task must be 'classification' or 'regression', got {task!r}")
    return task == "classification"


def train_validation_split(X: np.ndarray, y: np.ndarray, *, validation_fraction: float, seed: int,
                           task: str | None = None) -> Split:
    """Shuffle and split into ``(X_train, y_train, X_val, y_val)``.

    Classification (integer ``y``, or ``task="classification"``) is stratified: each class sends
    ``round(fraction * count)`` examples (at least one when it has two or more) to validation, so
    every class appears in the per-class validation scores. Deterministic in ``seed``.
    """
    X, y = _check_xy(X, y)
    if not 0.0 < validation_fraction < 1.0:
        raise ValidationError(f"validation_fraction must be strictly between 0 and 1, got {validation_fraction!r}")
    rng = np.random.default_rng(seed)
    n = len(y)
    if _is_classification(y, task):
        val_parts = []
        for c in np.unique(y):
            idx = rng.permutation(np.flatnonzero(y == c))
            k = int(round(validation_fraction * len(idx)))
            if len(idx) >= 2:
                k = min(max(k, 1), len(idx) - 1)
            val_parts.append(idx[:k])
        val = np.concatenate(val_parts) if val_parts else np.empty(0, dtype=np.int64)
    else:
        k = int(round(validation_fraction * n))
        val = rng.permutation(n)[:k]
    mask = np.zeros(n, dtype=bool)
    mask[val] = True
    train_idx = rng.permutation(np.flatnonzero(~mask))
    val_idx = rng.permutation(np.flatnonzero(mask))
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise ValidationError(f"split of {n} rows leaves an empty side; use more data or another validation_fraction")
    return Split(X[train_idx], y[train_idx], X[val_idx], y[val_idx])


def dirichlet_shards(y: np.ndarray, n_shards: int, *, alpha: float, seed: int, min_size: int = 1,
                     task: str | None = None, n_bins: int = 10, max_tries: int = 1000) -> list[np.ndarray]:
    """Split example indices into ``n_shards`` non-IID shards (the usual Dirichlet label split).

    For each label, shard proportions are drawn from ``Dirichlet(alpha, ..., alpha)`` and that
    label's (shuffled) examples are cut accordingly; small ``alpha`` (0.1) gives very skewed shards,
    large ``alpha`` (100) nearly IID ones. Regression targets (float ``y`` or
    ``task="regression"``) are first binned into ``n_bins`` quantile bins and the bins used as labels.
    Draws are repeated (up to ``max_tries``) until every shard has at least ``min_size`` examples.

    Returns a list of sorted int64 index arrays that together cover ``range(len(y))`` exactly once.
    """
    y = np.asarray(y)
    if y.ndim != 1 or len(y) == 0:
        raise ValidationError(f"y must be a non-empty 1-D array, got shape {y.shape}")
    if isinstance(n_shards, bool) or not isinstance(n_shards, (int, np.integer)) or n_shards < 1:
        raise ValidationError(f"n_shards must be a positive integer, got {n_shards!r}")
    if not alpha > 0:
        raise ValidationError(f"alpha must be > 0, got {alpha!r}")
    if min_size < 0 or n_shards * min_size > len(y):
        raise ValidationError(
            f"cannot give {n_shards} shards at least {min_size} examples each out of {len(y)}; "
            "lower min_size or n_shards")
    if _is_classification(y, task):
        labels = y
    else:
        yf = y.astype(np.float64)
        edges = np.quantile(yf, np.linspace(0, 1, n_bins + 1)[1:-1])
        labels = np.searchsorted(edges, yf, side="right")
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    for _ in range(max_tries):
        parts: list[list[np.ndarray]] = [[] for _ in range(n_shards)]
        for c in classes:
            idx = rng.permutation(np.flatnonzero(labels == c))
            p = rng.dirichlet(np.full(n_shards, float(alpha)))
            cuts = (np.cumsum(p)[:-1] * len(idx)).astype(np.int64)
            for s, chunk in enumerate(np.split(idx, cuts)):
                parts[s].append(chunk)
        shards = [np.sort(np.concatenate(p)).astype(np.int64) for p in parts]
        if min(len(s) for s in shards) >= min_size:
            return shards
    raise ValidationError(
        f"no Dirichlet split with every shard >= {min_size} examples after {max_tries} draws "
        f"(alpha={alpha}); raise alpha or lower min_size/n_shards")


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def _check_columns(feature_names: Sequence[str], target_name: str, width: int) -> list[str]:
    names = [str(f) for f in feature_names]
    if len(names) != width:
        raise ValidationError(f"{len(names)} feature names for {width} columns of X")
    cols = names + [str(target_name)]
    if len(set(cols)) != len(cols):
        raise ValidationError("feature names and the target name must be unique")
    for c in cols:
        if not c or any(ch in c for ch in "\r\n"):
            raise ValidationError(f"column name {c!r} must be non-empty and on one line")
    return names


def _fmt(a: np.ndarray) -> list[str]:
    if a.dtype.kind in "biu":
        return [str(int(v)) for v in a]
    if a.dtype == np.float32:
        return ["%.9g" % v for v in a]
    return [repr(float(v)) for v in a]


def write_csv(path: str | os.PathLike[str], X: np.ndarray, y: np.ndarray, feature_names: Sequence[str],
              target_name: str) -> None:
    """Write a CSV with a header row (features, then target) and one row per example."""
    X, y = _check_xy(X, y)
    names = _check_columns(feature_names, target_name, X.shape[1])
    cols = [_fmt(X[:, j]) for j in range(X.shape[1])] + [_fmt(y)]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(names + [str(target_name)])
        w.writerows(zip(*cols))


def write_npz(path: str | os.PathLike[str], X: np.ndarray, y: np.ndarray, feature_names: Sequence[str],
              target_name: str) -> None:
    """Write the NPZ *matrix layout*: ``X``, ``y``, ``feature_names`` and ``target_name`` (no pickles)."""
    X, y = _check_xy(X, y)
    names = _check_columns(feature_names, target_name, X.shape[1])
    with open(path, "wb") as fh:
        np.savez(fh, X=X, y=y, feature_names=np.asarray(names, dtype=np.str_),
                 target_name=np.asarray(str(target_name), dtype=np.str_))


def _label_array(values: np.ndarray) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if np.all(v == np.round(v)) and np.all(np.abs(v) < 2**53):
        return v.astype(np.int64)
    return v.astype(np.float32)


def _finish(path: str, X: np.ndarray, y: np.ndarray, names: list[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    if len(y) == 0:
        raise VaultError(f"{path}: the table has no data rows; add examples")
    if not names:
        raise VaultError(f"{path}: the table has no feature columns besides the target")
    if not np.isfinite(X).all() or not np.isfinite(np.asarray(y, dtype=np.float64)).all():
        raise VaultError(f"{path}: the table contains NaN or infinite values; fill or drop those rows")
    return np.ascontiguousarray(X, dtype=np.float32), _label_array(y), names


def _read_csv(path: str, target: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                raise VaultError(f"{path}: the file is empty; a CSV needs a header row and data rows")
            header = [h.strip() for h in header]
            if target not in header:
                raise VaultError(f"{path}: no target column {target!r}; columns are {header[:20]}")
            if len(set(header)) != len(header):
                raise VaultError(f"{path}: the header repeats a column name; names must be unique")
            t = header.index(target)
            rows: list[list[float]] = []
            for lineno, row in enumerate(reader, start=2):
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if len(row) != len(header):
                    raise VaultError(f"{path}: line {lineno} has {len(row)} values; the header has {len(header)}")
                try:
                    rows.append([float(v) for v in row])
                except ValueError:
                    bad = next(i for i, v in enumerate(row) if not _is_float(v))
                    raise VaultError(
                        f"{path}: line {lineno}, column {header[bad]!r}: {row[bad]!r} is not a number; "
                        "every value must be numeric (encode categories as numbers)") from None
    except UnicodeDecodeError:
        raise VaultError(f"{path}: not UTF-8 text; save the CSV as UTF-8") from None
    except csv.Error as exc:
        raise VaultError(f"{path}: malformed CSV ({exc})") from None
    data = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(header))
    keep = [i for i in range(len(header)) if i != t]
    return _finish(path, data[:, keep], data[:, t], [header[i] for i in keep])


def _is_float(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True


def _read_npz(path: str, target: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise VaultError(f"{path}: not a readable NPZ archive without pickles ({exc})") from None
    if not arrays:
        raise VaultError(f"{path}: the archive is empty")
    if "X" in arrays and "y" in arrays:
        X, y = arrays["X"], arrays["y"]
        if "feature_names" not in arrays:
            raise VaultError(f"{path}: matrix layout (X, y) needs a 'feature_names' array naming the columns of X")
        names = [str(n) for n in np.asarray(arrays["feature_names"]).ravel()]
        if "target_name" in arrays and str(arrays["target_name"]) != target:
            raise VaultError(f"{path}: the target is {str(arrays['target_name'])!r}, not {target!r}")
        if X.ndim != 2 or y.ndim != 1 or len(X) != len(y) or X.shape[1] != len(names):
            raise VaultError(f"{path}: X {X.shape}, y {y.shape} and {len(names)} feature names do not fit together")
    else:
        if target not in arrays:
            raise VaultError(f"{path}: no target array {target!r}; arrays are {sorted(arrays)[:20]}")
        names = [k for k in arrays if k != target]
        y = arrays[target]
        cols = [arrays[k] for k in names]
        if y.ndim != 1 or any(c.ndim != 1 or len(c) != len(y) for c in cols):
            raise VaultError(f"{path}: column layout needs 1-D arrays of equal length for every column")
        X = np.stack(cols, axis=1) if cols else np.empty((len(y), 0))
    for what, a in (("features", X), ("target", y)):
        if a.dtype.kind not in "biuf":
            raise VaultError(f"{path}: {what} have dtype {a.dtype}; every value must be numeric")
    return _finish(path, X.astype(np.float64), y, names)


def read_table(path: str | os.PathLike[str], *, target: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read a CSV or NPZ table (see the module docstring) → ``(X float32, y, feature_names)``.

    Raises :class:`VaultError` for a missing file, an unknown extension, a missing target column,
    non-numeric, NaN or infinite values, ragged rows, or an empty table.
    """
    p = os.fspath(path)
    if not os.path.isfile(p):
        raise VaultError(f"{p}: no such file")
    ext = os.path.splitext(p)[1].lower()
    if ext == ".csv":
        return _read_csv(p, target)
    if ext == ".npz":
        return _read_npz(p, target)
    raise VaultError(f"{p}: unsupported file type {ext!r}; use .csv (with a header row) or .npz")


def select_features(X: np.ndarray, feature_names: Sequence[str], wanted: Sequence[str]) -> np.ndarray:
    """Columns of ``X`` reordered to ``wanted`` (a manifest's features); ``VaultError`` if any is missing."""
    index = {n: i for i, n in enumerate(feature_names)}
    missing = [w for w in wanted if w not in index]
    if missing:
        raise VaultError(
            f"the dataset lacks feature column(s) {missing[:10]} that the model expects; "
            f"it has {list(feature_names)[:10]}{' ...' if len(feature_names) > 10 else ''}")
    return np.ascontiguousarray(np.asarray(X)[:, [index[w] for w in wanted]])
