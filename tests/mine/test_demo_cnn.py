"""`mine demo --model cnn`: the market with digits as 1x8x8 images through a small CNN, via the CLI."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from mine.cli import cli


def test_cnn_demo_trains_a_convolutional_model_through_the_market(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli, ["demo", "--model", "cnn", "--miners", "3", "--malicious", "1", "--attack", "label_flip",
              "--rounds", "2", "--seed", "1", "--out", str(out)],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == "digits-cnn" and summary["metric"] == "accuracy"
    assert len(summary["model_versions"]) >= 2  # at least one update made it through the owner's checks
    assert summary["final_score"] > summary["initial_score"]
    assert summary["audit"]["mismatches"] == []


def test_cnn_demo_needs_digits(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["demo", "--model", "cnn", "--dataset", "diabetes", "--out", str(tmp_path)])
    assert result.exit_code != 0 and "--model cnn needs --dataset digits" in result.output
