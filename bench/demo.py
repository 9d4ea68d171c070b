"""End to end: the ``mine demo`` scenario (digits, 8 miners, 2 label-flippers, 5 rounds by default)
into a temporary directory on its own anvil, with its output captured; reports its time split and
quality figures (final vs centralised score, malicious updates accepted)."""

from __future__ import annotations

import io
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from mine.demo import DemoSettings, run_demo

QUICK = {"miners": 3, "malicious": 1, "rounds": 1}
#: The default demo's final accuracy when the fair-market issue (issue 9) was filed, before DP became
#: the default: the market must keep 99 % of it.
FILED_SCORE = 0.9600
SCORE_BAR = round(0.99 * FILED_SCORE, 4)


def settings(*, quick: bool, out: Path, model: str = "mlp", dp: bool = True) -> DemoSettings:
    return DemoSettings(out=out, model=model, dp=dp, **(QUICK if quick else {}))


def run(*, quick: bool = False) -> dict[str, Any]:
    """The default demo (digits MLP), with the same scenario run with the digits CNN under ``"cnn"``
    and without DP (``--no-dp``) under ``"no_dp"``."""
    return {**_run_one(quick=quick, model="mlp"), "cnn": _run_one(quick=quick, model="cnn"),
            "no_dp": _run_one(quick=quick, model="mlp", dp=False)}


def _run_one(*, quick: bool, model: str, dp: bool = True) -> dict[str, Any]:
    out = Path(tempfile.mkdtemp(prefix="bench-demo-"))
    try:
        s = settings(quick=quick, out=out, model=model, dp=dp)
        console = Console(file=io.StringIO(), width=120)
        started = time.perf_counter()
        summary = run_demo(s, console=console, progress_console=Console(file=io.StringIO()))
        wall = time.perf_counter() - started
    finally:
        shutil.rmtree(out, ignore_errors=True)
    subs = summary["submissions"]
    honest = [x for x in subs if x["honest"]]
    t = summary["timings_s"]  # "other": setup (anvil, deploy, vaults), settling, the centralised reference
    return {
        "dataset": summary["dataset"], "model": summary.get("model", model), "dp": dp, "metric": summary["metric"],
        "miners": summary["miners"],
        "malicious": summary["malicious"], "malicious_miners": summary["malicious_miners"],
        "attack": summary["attack"], "rounds": summary["rounds"],
        "timings_s": {**t, "other": round(t["total"] - sum(v for k, v in t.items() if k != "total"), 3)},
        "wall_s": round(wall, 2),
        "initial_score": round(summary["initial_score"], 4),
        "final_score": round(summary["final_score"], 4),
        "centralized_score": round(summary["centralized_score"], 4),
        "final_vs_centralized": round(summary["final_score"] / summary["centralized_score"], 4),
        "malicious_accepted": summary["malicious_accepted"],
        "malicious_submitted": summary["malicious_submitted"],
        "honest_accepted": sum(1 for x in honest if x["accepted"]),
        "honest_submitted": len(honest),
        "model_versions": len(summary["model_versions"]),
        "paid_eth": round(summary["paid_wei"] / 10**18, 4),
    }


def goals(d: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {"demo_no_malicious_accepted": {"value": d["malicious_accepted"], "goal": "== 0",
                                          "met": d["malicious_accepted"] == 0}}
    if "cnn" in d:
        c = d["cnn"]["malicious_accepted"]
        out["demo_cnn_no_malicious_accepted"] = {"value": c, "goal": "== 0", "met": c == 0}
    # issue 9's bar: the market keeps 99 % of the score it had when filed (no DP then); the DP
    # default's own cost is a separate figure, held to the same bar (its decision is open)
    bar = f">= 0.99 x {FILED_SCORE:.4f} = {SCORE_BAR:.4f}"
    if "no_dp" in d:
        v = d["no_dp"]["final_score"]
        out["demo_score_no_dp"] = {"value": v, "goal": bar, "met": v >= SCORE_BAR}
    out["demo_score_dp"] = {"value": d["final_score"], "goal": bar + " (issue 9: the DP cost, decision open)",
                            "met": d["final_score"] >= SCORE_BAR}
    return out
