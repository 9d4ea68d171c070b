"""The vault: datasets registered with this mine. The data stays where it is and never leaves.

The vault records a dataset's path, SHA-256, row count and feature schema; training reads the file
in place after checking that its hash has not changed. Nothing here uploads, copies or logs rows.

A dataset may name a *group* column (``mine vault add ... --group site``): a non-feature column of a
validation set whose values are the subgroups (a hospital site, an age band, ...) the owner's
subgroup rule protects. It is not a feature: :meth:`Vault.load` leaves it out, so it never reaches a
model; :meth:`Vault.load_groups` reads it for the evaluation.
"""

from __future__ import annotations

import builtins
import hashlib
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from mine.errors import VaultError
from mine.home import MineHome, read_json, write_json_atomic

if TYPE_CHECKING:  # numpy is imported where rows are read, not to list the vault
    import numpy as np


@dataclass(frozen=True)
class Dataset:
    name: str
    path: str
    sha256: str
    rows: int
    features: list[str]
    target: str
    added: float
    group: str | None = None


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class Vault:
    """The registry of datasets in a mine home (`vault.json`)."""

    def __init__(self, home: MineHome) -> None:
        self.path = home.root / "vault.json"

    def _load(self) -> dict[str, dict]:
        return read_json(self.path, {})

    def list(self) -> builtins.list[Dataset]:
        return [Dataset(**v) for _, v in sorted(self._load().items())]

    def get(self, name: str) -> Dataset:
        entry = self._load().get(name)
        if entry is None:
            raise VaultError(f"no dataset named {name!r} in the vault; see `mine vault list`")
        return Dataset(**entry)

    def add(self, name: str, file: Path, *, target: str, group: str | None = None) -> Dataset:
        """Register ``file``; ``group`` names a column that is a subgroup key, not a feature."""
        entries = self._load()
        if name in entries:
            raise VaultError(f"a dataset named {name!r} exists; remove it first or pick another name")
        file = file.expanduser().resolve()
        if not file.is_file():
            raise VaultError(f"{file} is not a file")
        from mine.datasets import read_table

        X, _y, features = read_table(file, target=target)
        if group is not None:
            if group not in features:
                raise VaultError(f"{file}: no group column {group!r} besides the target; columns are {features[:20]}")
            features = [f for f in features if f != group]
            if not features:
                raise VaultError(f"{file}: no feature columns left besides the target and the group column")
        dataset = Dataset(
            name=name, path=str(file), sha256=file_sha256(file), rows=int(X.shape[0]),
            features=list(features), target=target, added=time.time(), group=group,
        )
        entries[name] = asdict(dataset)
        write_json_atomic(self.path, entries)
        return dataset

    def remove(self, name: str) -> Dataset:
        entries = self._load()
        if name not in entries:
            raise VaultError(f"no dataset named {name!r} in the vault")
        dataset = Dataset(**entries.pop(name))
        write_json_atomic(self.path, entries)
        return dataset

    def load(self, name: str) -> tuple[np.ndarray, np.ndarray, builtins.list[str]]:
        """Read a dataset in place, refusing it if the file changed since `mine vault add`.

        Returns ``(X, y, features)`` without the group column (if the dataset has one).
        """
        X, y, columns, _groups = self.load_with_groups(name)
        return X, y, columns

    def load_groups(self, name: str) -> np.ndarray | None:
        """The dataset's group column (one value per row), or ``None`` if it was added without ``--group``."""
        return self.load_with_groups(name)[3]

    def load_with_groups(self, name: str) -> tuple[np.ndarray, np.ndarray, builtins.list[str], np.ndarray | None]:
        """``(X, y, features, groups)``: like :meth:`load`, plus the group column (or ``None``)."""
        dataset = self.get(name)
        path = Path(dataset.path)
        if not path.exists():
            raise VaultError(f"dataset {name!r}: {path} is gone; restore it or `mine vault remove {name}`")
        digest = file_sha256(path)
        if digest != dataset.sha256:
            raise VaultError(
                f"dataset {name!r}: {path} changed since it was added (SHA-256 {digest[:12]}… != "
                f"{dataset.sha256[:12]}…); if the change is intended, remove and add it again"
            )
        import numpy as np

        from mine.datasets import read_table

        X, y, columns = read_table(path, target=dataset.target)
        if dataset.group is None:
            return X, y, columns, None
        if dataset.group not in columns:
            raise VaultError(f"dataset {name!r}: the group column {dataset.group!r} is gone from {path}")
        g = columns.index(dataset.group)
        keep = [i for i in range(len(columns)) if i != g]
        return (np.ascontiguousarray(X[:, keep]), y, [columns[i] for i in keep],
                np.ascontiguousarray(X[:, g]))


class ValidationData(NamedTuple):
    """A validation set read from the vault for a model: ``X`` in the model's feature order, ``y``,
    ``groups`` (labels ``"COLUMN=VALUE"``, one per row, or ``None``) and the file it came from."""

    X: np.ndarray
    y: np.ndarray
    groups: np.ndarray | None
    path: Path


def group_labels(column: str, values: np.ndarray) -> np.ndarray:
    """Subgroup labels ``"site=3"`` for a group column's values (integral floats print as integers)."""
    import numpy as np

    out = []
    for v in np.asarray(values).tolist():
        text = str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)
        out.append(f"{column}={text}")
    return np.asarray(out, dtype=np.str_)


def load_validation(vault: Vault, name: str, features: Sequence[str]) -> ValidationData:
    """The owner's validation set ``name`` for a model with these features, with its subgroups.

    The group column (``mine vault add ... --group COLUMN``) is returned as labels for the subgroup
    rule and never among the model's inputs; a manifest that lists it as a feature is refused.
    """
    from mine.datasets import select_features

    dataset = vault.get(name)
    if dataset.group is not None and dataset.group in features:
        raise VaultError(f"the model uses {dataset.group!r} as a feature, but it is {name!r}'s group column; "
                         "a group column never reaches the model (add the dataset again without --group)")
    X, y, columns, groups = vault.load_with_groups(name)
    labels = None if groups is None or dataset.group is None else group_labels(dataset.group, groups)
    return ValidationData(select_features(X, columns, list(features)), y, labels, Path(dataset.path))


def fits(dataset: Dataset, features: list[str]) -> str | None:
    """None if the dataset has every feature the model needs, else what is missing."""
    missing = [f for f in features if f not in dataset.features]
    if missing:
        shown = ", ".join(missing[:5]) + (" …" if len(missing) > 5 else "")
        return f"missing {len(missing)} feature(s): {shown}"
    return None
