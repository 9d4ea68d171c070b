"""CLI start time: how long `mine` takes to answer, next to what importing web3 alone costs.

Each command runs as a fresh process (as a user types it), `repeats` times; the figure is the
median wall time. `mine status` and `mine bounties` talk to a real anvil with a deployed Sonar (the
status of dev account 1, which has no submissions: the time is start-up plus a few RPCs).
Baselines in the same run: `python -c pass` (the interpreter) and `python -c "import web3"` (the
floor of any command that talks to the chain). Goal: `mine status` under 1 s.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from mine.chain import SonarClient, connect
from mine.devnet import anvil, dev_account

GOAL_S = 1.0


def _mine_command() -> list[str]:
    script = Path(sys.executable).parent / "mine"
    return [str(script)] if script.exists() else [sys.executable, "-m", "mine.cli"]


def _median_s(cmd: list[str], env: dict[str, str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
        times.append(time.perf_counter() - started)
    return round(statistics.median(times), 3)


def measure(rpc_url: str, *, repeats: int) -> dict[str, Any]:
    sonar = SonarClient.deploy(connect(rpc_url), dev_account(0))
    home = Path(tempfile.mkdtemp(prefix="bench-cli-"))
    try:
        env = {**os.environ, "MINE_HOME": str(home / "mine")}
        mine = _mine_command()
        subprocess.run([*mine, "init", "--rpc", rpc_url, "--sonar", sonar.address], env=env, check=True,
                       capture_output=True, timeout=120)
        runs = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "python -c 'import web3'": [sys.executable, "-c", "import web3"],
            "mine --help": [*mine, "--help"],
            "mine vault list": [*mine, "vault", "list"],
            "mine status": [*mine, "--dev-account", "1", "status"],
            "mine bounties": [*mine, "bounties"],
        }
        seconds = {name: _median_s(cmd, env, repeats) for name, cmd in runs.items()}
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return {"seconds": seconds, "repeats": repeats,
            "status_over_import_web3": round(seconds["mine status"] / seconds["python -c 'import web3'"], 2)}


def goals(c: dict[str, Any]) -> dict[str, dict[str, Any]]:
    value = c["seconds"]["mine status"]
    return {"cli_status_start": {"value": value, "goal": f"< {GOAL_S:g} s", "met": value < GOAL_S}}


def run(*, quick: bool = False, rpc_url: str | None = None) -> dict[str, Any]:
    repeats = 1 if quick else 5
    if rpc_url is not None:
        return measure(rpc_url, repeats=repeats)
    with anvil() as url:
        return measure(url, repeats=repeats)
