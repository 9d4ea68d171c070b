"""The scripts users run: the brownie deployment and the plain-web3 bounty listing."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from mine.chain import BountyParams, SonarClient, ZERO_ADDRESS, build_dir

ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    env = os.environ.copy()
    bins = [ROOT / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin", ROOT / "node_modules" / ".bin",
            Path(sys.executable).parent]
    env["PATH"] = os.pathsep.join([*map(str, bins), env.get("PATH", "")])
    env["SOLCX_BINARY_PATH"] = str(ROOT / ".solcx")
    return env


def test_brownie_deploy_prints_and_records_the_address() -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "brownie"), "run", "scripts/deploy.py", "--network", "development"],
        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    match = re.search(r"Sonar deployed at (0x[0-9a-fA-F]{40}) on chain (\d+)", result.stdout)
    assert match, result.stdout
    record = json.loads((build_dir() / "deployments" / f"sonar-{match.group(2)}.json").read_text())
    assert record["address"] == match.group(1)


def test_web3_script_lists_bounties(sonar: SonarClient, rpc_url: str) -> None:
    sonar.post_bounty(BountyParams(
        token=ZERO_ADDRESS, reward=3 * 10**17, stake=10**15, deadline=sonar.now() + 3600, eval_window=600,
        initial_score=100_000, target_score=900_000, higher_is_better=True,
        validation_commitment=b"\x01" * 32, model_digest=b"\x02" * 32, model_codec=0,
    ))
    result = subprocess.run(
        [sys.executable, "scripts/list_bounties.py", "--rpc", rpc_url, "--sonar", sonar.address],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "brownie" not in (ROOT / "scripts" / "list_bounties.py").read_text().split('"""', 2)[2]
    rows = [line.split() for line in result.stdout.splitlines()[2:]]
    assert ["open", str(3 * 10**17)] in [row[1:2] + row[3:4] for row in rows]
