"""The privacy ledger: how much of each vault dataset's privacy budget its updates have spent.

Every update trained on a dataset is recorded with its DP-SGD mechanism (noise multiplier,
sampling rate, steps). What the dataset has spent is not the sum of the updates' ε: the ledger
recomputes ε over the whole history with Opacus' RDP accountant (RDP composes by adding Rényi
divergences per order, then converts once to (ε, δ)), which is much tighter — five updates at
ε = 2 cost about ε = 5.5, not 10. Before an update is trained, :meth:`PrivacyLedger.spend` checks the
composed ε with the new update against the dataset's budget and refuses past it.

Default budget :data:`DEFAULT_BUDGET` = 10 at δ = min(1e-5, 1/n): large enough for a data owner
to join four bounties or rounds at the default per-update ε = 4 (``mine.dp.DEFAULT_DP``; four
compose to ε ≈ 9), small enough that the whole lifetime of the data stays in the range where DP-SGD measurably stops
reconstruction, label and re-identification attacks (ε ≤ 8–10 is the range the literature and
deployed systems use; Apple's per-day budgets are 2–16, the 2020 US census spent about 17 in total).

A non-private update (``mine train --no-dp``) is recorded too and reported (the data then has no
DP guarantee at all), but it is not charged against the budget: the user opted out explicitly, and
refusing later DP updates would protect nothing that had not already left.

The ledger is one JSON file in the mine home (``privacy-ledger.json``), rewritten atomically under
an exclusive lock, so two concurrent ``mine train`` runs cannot both spend the last of a budget
and a crash leaves the old or the new file, never half of one. Entries are keyed by dataset name
and remember the dataset's SHA-256: removing and re-adding the same data does not reset its budget.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from mine.errors import VaultError
from mine.home import MineHome, read_json, write_json_atomic

__all__ = ["DEFAULT_BUDGET", "BudgetExceededError", "BudgetStatus", "LedgerEntry", "PrivacyLedger"]

#: Default lifetime ε budget of a dataset (δ = min(1e-5, 1/n)); see the module docstring.
DEFAULT_BUDGET = 10.0
#: Largest budget ``mine vault budget --set`` accepts.
MAX_BUDGET = 100.0


class BudgetExceededError(VaultError):
    """Training this update would take a dataset past its privacy budget."""


@dataclass(frozen=True)
class LedgerEntry:
    """One update trained on the dataset. ``noise_multiplier`` 0 marks a non-private update."""

    id: str
    noise_multiplier: float
    sample_rate: float
    steps: int
    epsilon: float  # the update's own ε (inf without DP)
    delta: float
    bounty: int | None = None
    note: str = ""
    time: float = field(default_factory=time.time)

    @property
    def private(self) -> bool:
        return self.noise_multiplier > 0


@dataclass(frozen=True)
class BudgetStatus:
    dataset: str
    budget: float
    delta: float
    spent: float  # composed ε of the DP updates
    updates: int  # DP updates
    non_private: int  # updates trained with --no-dp (no guarantee)

    @property
    def private(self) -> bool:
        """False once a non-private update was trained on the data."""
        return self.non_private == 0

    @property
    def remaining(self) -> float:
        return max(0.0, self.budget - self.spent)


def _jsonable(x: float) -> Any:
    return "inf" if math.isinf(x) else x


class PrivacyLedger:
    """Per-dataset privacy budgets and spending in one mine home."""

    def __init__(self, home: MineHome) -> None:
        self.path = home.root / "privacy-ledger.json"
        self._lock_path = home.root / ".privacy-ledger.lock"

    # ------------------------------------------------------------------ storage

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self._lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                data = read_json(self.path, {})
                yield data
                write_json_atomic(self.path, data)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _dataset(self, data: dict[str, Any], name: str, *, rows: int | None = None) -> dict[str, Any]:
        from mine.dp import default_delta

        entry = data.setdefault(name, {"budget": DEFAULT_BUDGET, "delta": None, "entries": []})
        if entry.get("delta") is None and rows is not None:
            entry["delta"] = default_delta(rows)
        return entry

    @staticmethod
    def _entries(raw: dict[str, Any]) -> list[LedgerEntry]:
        return [LedgerEntry(**{**e, "epsilon": float(e["epsilon"])}) for e in raw.get("entries", [])]

    @staticmethod
    def _composed(entries: list[LedgerEntry], delta: float) -> float:
        from mine.dp import composed_epsilon

        return composed_epsilon([(e.noise_multiplier, e.sample_rate, e.steps) for e in entries if e.private], delta)

    # ------------------------------------------------------------------ queries

    def status(self, name: str, *, rows: int | None = None) -> BudgetStatus:
        """Budget, δ and composed ε spent so far on dataset ``name``."""
        from mine.dp import default_delta

        raw = read_json(self.path, {}).get(name, {})
        entries = self._entries(raw)
        delta = raw.get("delta") or (default_delta(rows) if rows else 1e-5)
        return BudgetStatus(
            dataset=name, budget=float(raw.get("budget", DEFAULT_BUDGET)), delta=delta,
            spent=self._composed(entries, delta), updates=sum(e.private for e in entries),
            non_private=sum(not e.private for e in entries),
        )

    def entries(self, name: str) -> list[LedgerEntry]:
        return self._entries(read_json(self.path, {}).get(name, {}))

    # ------------------------------------------------------------------ changes

    def set_budget(self, name: str, budget: float, *, rows: int | None = None) -> BudgetStatus:
        """Set dataset ``name``'s lifetime ε budget (a budget below what is spent just stops training)."""
        if not (math.isfinite(budget) and 0 < budget <= MAX_BUDGET):
            raise VaultError(f"a privacy budget must be a number in (0, {MAX_BUDGET:g}], got {budget!r}")
        with self._locked() as data:
            self._dataset(data, name, rows=rows)["budget"] = float(budget)
        return self.status(name, rows=rows)

    def spend(self, name: str, *, rows: int, noise_multiplier: float, sample_rate: float, steps: int,
              epsilon: float, delta: float, bounty: int | None = None, note: str = "",
              enforce: bool = True) -> tuple[LedgerEntry, BudgetStatus]:
        """Record an update about to be trained on ``name``; raise :class:`BudgetExceededError` past the budget.

        Call it *before* training (then :meth:`refund` if training fails), so the check and the
        record are one atomic step. ``noise_multiplier`` 0 records a non-private update
        (``enforce=False``: the user opted out explicitly).
        """
        with self._locked() as data:
            raw = self._dataset(data, name, rows=rows)
            entries = self._entries(raw)
            entry = LedgerEntry(id=uuid.uuid4().hex[:12], noise_multiplier=float(noise_multiplier),
                                sample_rate=float(sample_rate), steps=int(steps), epsilon=float(epsilon),
                                delta=float(delta), bounty=bounty, note=note)
            ledger_delta = float(raw["delta"])
            after = self._composed(entries + [entry], ledger_delta)
            budget = float(raw["budget"])
            if enforce and after > budget:
                before = self._composed(entries, ledger_delta)
                why = (f"it has spent ε = {before:.2f} of its budget {budget:g} over "
                       f"{sum(e.private for e in entries)} update(s) and this update would bring it to ε = {after:.2f}")
                raise BudgetExceededError(
                    f"dataset {name!r} is out of privacy budget: {why} (δ = {ledger_delta:g}). Train with a smaller "
                    f"--epsilon, or raise the budget with `mine vault budget {name} --set EPS` if you accept the risk")
            raw["entries"].append({**asdict(entry), "epsilon": _jsonable(entry.epsilon)})
        return entry, self.status(name, rows=rows)

    def refund(self, name: str, entry_id: str) -> None:
        """Remove an entry whose training did not produce an update (nothing left the mine)."""
        with self._locked() as data:
            raw = data.get(name)
            if raw is not None:
                raw["entries"] = [e for e in raw.get("entries", []) if e.get("id") != entry_id]
