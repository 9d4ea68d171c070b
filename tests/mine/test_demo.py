"""`mine demo` at a small size, through the real CLI: its own anvil, the embedded store, a report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from mine.cli import cli


@pytest.mark.parametrize(("dataset", "attack"), [("digits", "scale"), ("diabetes", "label_flip")])
def test_small_demo_writes_summary_and_report(tmp_path: Path, dataset: str, attack: str) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli, ["demo", "--dataset", dataset, "--miners", "3", "--malicious", "1", "--attack", attack,
              "--rounds", "2", "--seed", "1", "--out", str(out)],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    for key in ("dataset", "metric", "attack", "miners", "malicious", "rounds", "seed", "initial_score",
                "final_score", "centralized_score", "bounty_wei", "paid_wei", "refunded_wei", "submissions",
                "model_versions", "timings_s"):
        assert key in summary, key
    assert summary["dataset"] == dataset and len(summary["submissions"]) == 3 * 2
    assert summary["paid_wei"] + summary["refunded_wei"] <= summary["bounty_wei"] + 6 * 10**16  # + forfeited stakes
    assert summary["paid_wei"] == sum(s["reward_wei"] for s in summary["submissions"])
    versions = summary["model_versions"]
    assert versions[0]["version"] == 0 and len(versions) == 1 + sum(s["accepted"] for s in summary["submissions"])
    better = (lambda a, b: a > b) if summary["metric"] == "accuracy" else (lambda a, b: a < b)
    assert all(better(b["score"], a["score"]) for a, b in zip(versions, versions[1:]))
    assert set(summary["timings_s"]) >= {"total", "train", "chain", "store", "evaluate"}
    # after close, replaying every version and evaluation from chain + store reproduces all scores
    assert summary["audit"] == {"scores_replayed": len(versions) + 6, "mismatches": []}
    report = (out / "report.html").read_text()
    assert "<svg" in report and "http" not in report.replace("http://www.w3.org", "")
    assert "miner0" in result.output
