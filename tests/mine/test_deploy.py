"""`scripts/deploy.py` on a network added with `brownie networks add`, deployer from a brownie keystore.

Everything is real: an anvil on a free port, brownie's own CLI (`networks add`, `accounts import`,
`run`) in a private brownie data folder (HOME), a keystore account funded from a dev key, and
`mine init --rpc URL` finding the recorded deployment afterwards.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from eth_account import Account

from mine.chain import build_dir, connect
from mine.cli import cli
from mine.devnet import anvil, dev_account

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery staple"


def _brownie(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(Path(sys.executable).parent / "brownie"), *args], cwd=ROOT, env=env, input=stdin,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def live_net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, dict[str, str]]]:
    """(network id, RPC URL, env): a fresh anvil added to a private brownie data folder as a live network."""
    home = tmp_path_factory.mktemp("brownie-home")
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(ROOT)}
    env.pop("SONAR_DEPLOYER", None)
    with anvil() as url:
        name = f"sonar-test-{url.rsplit(':', 1)[1]}"
        added = _brownie(env, "networks", "add", "Ethereum", name, f"host={url}", "chainid=31337")
        assert added.returncode == 0, added.stdout + added.stderr
        yield name, url, env


@pytest.fixture(scope="module")
def deployer(live_net: tuple[str, str, dict[str, str]], tmp_path_factory: pytest.TempPathFactory) -> str:
    """A new key, imported into brownie as `deployer`, funded with 1 ETH; returns its address."""
    _, url, env = live_net
    key = Account.create()
    keyfile = tmp_path_factory.mktemp("key") / "deployer.json"
    keyfile.write_text(json.dumps(Account.encrypt(key.key, PASSWORD)))
    imported = _brownie(env, "accounts", "import", "deployer", str(keyfile), stdin=PASSWORD + "\n")
    assert imported.returncode == 0, imported.stdout + imported.stderr
    w3 = connect(url)
    funder = dev_account(0)
    tx = {"to": key.address, "value": 10**18, "gas": 21000, "gasPrice": w3.eth.gas_price,
          "nonce": w3.eth.get_transaction_count(funder.address), "chainId": w3.eth.chain_id}
    w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(funder.sign_transaction(tx).raw_transaction))
    return key.address


def test_deploy_from_a_keystore_on_an_added_network(live_net: tuple[str, str, dict[str, str]], deployer: str,
                                                    tmp_path: Path) -> None:
    name, url, env = live_net
    result = _brownie({**env, "SONAR_DEPLOYER": "deployer", "SONAR_DEPLOYER_PASSWORD": PASSWORD},
                      "run", "scripts/deploy.py", "--network", name)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output and "TypeError" not in output, output
    match = re.search(r"Sonar deployed at (0x[0-9a-fA-F]{40}) on chain 31337 by (0x[0-9a-fA-F]{40})", result.stdout)
    assert match, output
    assert match.group(2) == deployer  # the keystore account paid for it, not a node-unlocked key
    sonar = match.group(1)
    assert json.loads((build_dir() / "deployments" / "sonar-31337.json").read_text())["address"] == sonar
    assert connect(url).eth.get_code(sonar) not in (b"", b"\x00")
    # brownie's own bookkeeping recorded it too (this is what raised TypeError before)
    with sqlite3.connect(Path(env["HOME"]) / ".brownie" / "deployments.db") as db:
        assert (sonar,) in db.execute("SELECT address FROM chain31337").fetchall()
    # `mine init --rpc URL` finds the recorded deployment
    mine_home = tmp_path / "mine"
    init = CliRunner().invoke(cli, ["--home", str(mine_home), "init", "--rpc", url], catch_exceptions=False)
    assert init.exit_code == 0, init.output
    assert json.loads((mine_home / "config.json").read_text())["sonar"] == sonar


def test_deploy_with_a_wrong_keystore_password_fails_cleanly(live_net: tuple[str, str, dict[str, str]],
                                                             deployer: str) -> None:
    name, _, env = live_net
    result = _brownie({**env, "SONAR_DEPLOYER": "deployer", "SONAR_DEPLOYER_PASSWORD": "wrong"},
                      "run", "scripts/deploy.py", "--network", name)
    assert result.returncode != 0
    assert "Sonar deployed" not in result.stdout
