"""The privacy ledger: composes every update on a dataset, refuses past its budget, survives restarts."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from mine import dp
from mine.home import Config, MineHome
from mine.ledger import DEFAULT_BUDGET, BudgetExceededError, PrivacyLedger


@pytest.fixture()
def home(tmp_path) -> MineHome:
    h = MineHome(tmp_path / "mine")
    h.init(Config())
    return h


def _spend(ledger: PrivacyLedger, record: dp.DPRecord, **kw):
    return ledger.spend("clinic", rows=200, noise_multiplier=record.noise_multiplier, sample_rate=record.sample_rate,
                        steps=record.steps, epsilon=record.epsilon, delta=record.delta, **kw)


def test_spending_composes_with_the_accountant_and_refuses_past_budget(home: MineHome) -> None:
    ledger = PrivacyLedger(home)
    record = dp.DPSettings(target_epsilon=2.0, sample_rate=1.0, steps=10).resolve(200)
    assert ledger.status("clinic").budget == DEFAULT_BUDGET
    ledger.set_budget("clinic", 6.0, rows=200)
    spent = []
    with pytest.raises(BudgetExceededError, match="out of privacy budget.*mine vault budget clinic --set"):
        for _ in range(10):
            spent.append(_spend(ledger, record)[1].spent)
    n = len(spent)
    assert n >= 3  # composition is sublinear: more than 6 / 2 updates fit in a budget of 6
    assert spent[-1] == pytest.approx(dp.epsilon_for(record.noise_multiplier, 1.0, 10 * n, 1e-5), rel=1e-9)
    assert spent[-1] < n * record.epsilon and spent[-1] <= 6.0
    assert ledger.status("clinic").updates == n  # the refused update is not recorded


def test_a_new_process_sees_the_spent_budget(home: MineHome) -> None:
    ledger = PrivacyLedger(home)
    record = dp.DPSettings(target_epsilon=3.0, sample_rate=0.5, steps=8).resolve(200)
    _spend(ledger, record, bounty=4)
    ledger.set_budget("clinic", 4.0)
    code = (
        "import sys; from mine.home import MineHome; from mine.ledger import PrivacyLedger, BudgetExceededError\n"
        f"l = PrivacyLedger(MineHome(__import__('pathlib').Path({str(home.root)!r})))\n"
        "s = l.status('clinic'); print(s.updates, s.budget, round(s.spent, 6))\n"
        f"try:\n l.spend('clinic', rows=200, noise_multiplier={record.noise_multiplier}, sample_rate=0.5, steps=8, "
        f"epsilon={record.epsilon}, delta=1e-5)\nexcept BudgetExceededError: print('refused')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == f"1 4.0 {round(record.epsilon, 6)}"
    assert out[1] == "refused"


def test_refund_and_non_private_updates(home: MineHome) -> None:
    ledger = PrivacyLedger(home)
    record = dp.DPSettings(target_epsilon=1.0, sample_rate=1.0, steps=5).resolve(200)
    entry, _ = _spend(ledger, record)
    ledger.refund("clinic", entry.id)
    assert ledger.status("clinic").updates == 0
    _, status = ledger.spend("clinic", rows=200, noise_multiplier=0.0, sample_rate=1.0, steps=1, epsilon=math.inf,
                             delta=1e-5, enforce=False, note="--no-dp")
    assert status.spent == 0.0 and status.non_private == 1 and not status.private
    _, status = _spend(ledger, record)  # the opt-out is reported, not charged
    assert status.spent == pytest.approx(record.epsilon) and status.updates == 1
    assert PrivacyLedger(home).entries("clinic")[0].epsilon == math.inf


def test_budget_must_be_positive_and_finite(home: MineHome) -> None:
    from mine.errors import VaultError

    for bad in (0.0, -1.0, math.inf, math.nan, 1e6):
        with pytest.raises(VaultError, match="privacy budget"):
            PrivacyLedger(home).set_budget("clinic", bad)
