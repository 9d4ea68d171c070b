"""`mine demo` at a small size, through the real CLI: its own anvil, the embedded store, a report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from mine.cli import cli


@pytest.mark.parametrize(("dataset", "attack", "metric"), [("digits", "scale", None), ("diabetes", "label_flip", None),
                                                     ("breast_cancer", "noise", None),
                                                     ("breast_cancer", "label_flip", "accuracy")])
def test_small_demo_writes_summary_and_report(tmp_path: Path, dataset: str, attack: str, metric: str | None) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli, ["demo", "--dataset", dataset, "--miners", "3", "--malicious", "1", "--attack", attack,
              "--rounds", "2", "--seed", "1", "--out", str(out), *(["--metric", metric] if metric else [])],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    # the DP bounty caps ε, so every update takes the backdoor test; diabetes' linear model has none
    assert ("skip the backdoor test" in result.output or "no update takes the backdoor test" in result.output) == (
        dataset == "diabetes"), result.output
    summary = json.loads((out / "summary.json").read_text())
    for key in ("dataset", "metric", "attack", "miners", "malicious", "rounds", "seed", "initial_score",
                "final_score", "centralized_score", "bounty_wei", "paid_wei", "refunded_wei", "submissions",
                "miners_summary", "model_versions", "timings_s"):
        assert key in summary, key
    subs = summary["submissions"]
    assert summary["dataset"] == dataset and len(subs) == 3 * 2
    # breast cancer's demo bounty is scored by the validation loss (143 rows), digits' by accuracy
    assert summary["metric"] == (metric or {"digits": "accuracy", "diabetes": "mse", "breast_cancer": "cross_entropy"}[dataset])
    if summary["metric"] == "cross_entropy":  # scored by the validation loss; the accuracy is reported too
        assert summary["final_score"] < summary["initial_score"] and 0.5 < summary["final_accuracy"] <= 1
        assert summary["target_score"] < summary["final_score"] and "final accuracy" in result.output
    else:
        assert "final_accuracy" not in summary
    # forfeited stakes never reach the owner: every wei of reward and forfeits is paid to miners,
    # refunded (reward escrow only) or burned
    forfeited = sum(s["stake_wei"] for s in subs if not s["stake_returned"])
    assert summary["paid_wei"] + summary["refunded_wei"] + summary["forfeit_burned_wei"] == \
        summary["bounty_wei"] + forfeited
    assert summary["refunded_wei"] <= summary["bounty_wei"]
    assert summary["paid_wei"] == sum(s["reward_wei"] for s in subs)
    for s in subs:
        assert s["stake_wei"] == 10**16 and isinstance(s["stake_returned"], bool)
        assert s["stake_returned"] or not s["accepted"]
    for name, row in summary["miners_summary"].items():
        mine_subs = [s for s in subs if s["miner"] == name]
        forfeited = sum(s["stake_wei"] for s in mine_subs if not s["stake_returned"])
        assert row["net_wei"] == sum(s["reward_wei"] for s in mine_subs) - forfeited
    # one model version per settled round that accepted something (a round without gain may wait and be
    # settled with the next one); every version better than the last
    versions = summary["model_versions"]
    assert all(s["settled_round"] >= s["round"] for s in subs)
    rounds_accepting = {s["settled_round"] for s in subs if s["accepted"]}
    assert versions[0]["version"] == 0 and len(versions) == 1 + len(rounds_accepting)
    better = (lambda a, b: a > b) if summary["metric"] == "accuracy" else (lambda a, b: a < b)
    assert all(better(b["score"], a["score"]) for a, b in zip(versions, versions[1:]))
    # each round's accepted shares sum to 10000 bps
    for r in rounds_accepting:
        assert sum(s["share_bps"] for s in subs if s["settled_round"] == r and s["accepted"]) == 10_000
    assert set(summary["timings_s"]) >= {"total", "train", "chain", "store", "evaluate"}
    # after close, replaying every version and every verdict from chain + store + audit bundle matches
    assert summary["audit"] == {"scores_replayed": len(versions) + 6, "mismatches": []}
    report = (out / "report.html").read_text()
    assert "<svg" in report and "http" not in report.replace("http://www.w3.org", "")
    assert "Net per miner" in report
    assert "miner0" in result.output and "net (ETH)" in result.output
    # DP by default: every miner trains through its privacy ledger; each update carries its ε, each
    # miner the ε its ledger composes (RDP: below the sum), shown in the report and the table
    assert summary["dp"] is True
    for s in subs:
        assert 0 < s["epsilon"] <= 8 + 1e-6
    for name, row in summary["miners_summary"].items():
        eps = [s["epsilon"] for s in subs if s["miner"] == name]
        assert max(eps) <= row["epsilon_spent"] <= sum(eps) + 1e-6
        ledger = json.loads((out / "homes" / name / "privacy-ledger.json").read_text()) \
            if (out / "homes" / name / "privacy-ledger.json").exists() else None
        assert ledger is None or "private" in ledger
    assert "ε spent" in report and "ε spent" in result.output
    assert "privacy ledger" in result.output


def test_backdoor_attackers_lose_their_stakes(tmp_path: Path) -> None:
    # 3 of 10 miners stamp a trigger on half their rows: their updates are forfeited (code 9)
    out = tmp_path / "demo"
    result = CliRunner().invoke(
        cli, ["demo", "--dataset", "digits", "--miners", "10", "--malicious", "3", "--attack", "backdoor",
              "--rounds", "4", "--seed", "5", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    rows = summary["miners_summary"].values()
    assert all(r["net_wei"] < 0 for r in rows if not r["honest"]), summary["miners_summary"]
    assert all(r["net_wei"] >= 0 for r in rows if r["honest"]), summary["miners_summary"]
    honest = [s for s in summary["submissions"] if s["honest"]]
    assert sum(s["accepted"] for s in honest) >= 0.6 * len(honest)
    assert summary["backdoor_success"] < 0.1
    attacks = [s for s in summary["submissions"] if not s["honest"]]
    # an attack update is forfeited (a warning aside); one accepted before its miner was caught (the
    # first round has no pooled evidence, about 1 run in 20) loses its reward to the clawback
    assert all(s["accepted"] or not s["stake_returned"] or "a warning" in s["reason"] for s in attacks), attacks
    assert all(r["clawed_back_wei"] == r["reward_wei"] for r in rows if not r["honest"]), summary["miners_summary"]
    assert 9 in {s["reason_code"] for s in attacks}  # concentrated on the trigger's inputs
