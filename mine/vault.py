"""The vault: datasets registered with this mine. The data stays where it is and never leaves.

The vault records a dataset's path, SHA-256, row count and feature schema; training reads the file
in place after checking that its hash has not changed. Nothing here uploads, copies or logs rows.
"""

from __future__ import annotations

import builtins
import hashlib
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

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

    def add(self, name: str, file: Path, *, target: str) -> Dataset:
        entries = self._load()
        if name in entries:
            raise VaultError(f"a dataset named {name!r} exists; remove it first or pick another name")
        file = file.expanduser().resolve()
        if not file.is_file():
            raise VaultError(f"{file} is not a file")
        from mine.datasets import read_table

        X, _y, features = read_table(file, target=target)
        dataset = Dataset(
            name=name, path=str(file), sha256=file_sha256(file), rows=int(X.shape[0]),
            features=list(features), target=target, added=time.time(),
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
        """Read a dataset in place, refusing it if the file changed since `mine vault add`."""
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
        from mine.datasets import read_table

        return read_table(path, target=dataset.target)


def fits(dataset: Dataset, features: list[str]) -> str | None:
    """None if the dataset has every feature the model needs, else what is missing."""
    missing = [f for f in features if f not in dataset.features]
    if missing:
        shown = ", ".join(missing[:5]) + (" …" if len(missing) > 5 else "")
        return f"missing {len(missing)} feature(s): {shown}"
    return None
