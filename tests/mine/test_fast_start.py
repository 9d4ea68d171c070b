"""Commands that neither train nor evaluate start without torch (the CLI must answer in < 1 s).

Each command runs in a fresh interpreter against a real anvil; afterwards the interpreter reports
which heavy modules it imported. torch alone costs ~2.5 s, so one stray module-level import in the
path of `status`, `bounties`, `withdraw`, `vault`, `account` or `ipfs` shows up here. The commands
that only read the chain (`status`, `bounties`, `withdraw` with nothing to withdraw) go further: no
web3 either (~0.7 s), nor eth_account, eth_abi, eth_utils or requests (`mine.views` reads instead).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mine.chain import SonarClient

HEAVY = ("torch", "numpy", "sklearn", "scipy", "safetensors", "opacus")
CHAIN = ("web3", "eth_account", "eth_abi", "eth_utils", "eth_keys", "requests", "Crypto")

PROBE = """
import json, sys
from mine.cli import cli
try:
    cli(sys.argv[1:], standalone_mode=False)
finally:
    sys.stderr.write("\\nMODULES " + json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)) + "\\n")
"""


def _run(home: Path, *args: str, watch: tuple[str, ...] = HEAVY) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "MINE_PASSWORD"}
    env["MINE_HOME"] = str(home)
    proc = subprocess.run([sys.executable, "-c", PROBE.format(heavy=watch), "--home", str(home), *args],
                          capture_output=True, text=True, env=env, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    line = next(ln for ln in proc.stderr.splitlines() if ln.startswith("MODULES "))
    return json.loads(line.removeprefix("MODULES "))


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, rpc_url: str, sonar: SonarClient) -> Path:
    path = tmp_path_factory.mktemp("fast") / "mine"
    assert _run(path, "init", "--rpc", rpc_url, "--sonar", sonar.address) == []
    return path


@pytest.mark.parametrize("args", [
    ("--help",),
    ("vault", "list"),
    ("account", "list"),
    ("--dev-account", "1", "status"),
    ("bounties",),
    ("--dev-account", "1", "withdraw"),
    ("ipfs", "add", "-n", "{file}"),
])
def test_command_starts_without_torch(home: Path, tmp_path: Path, args: tuple[str, ...]) -> None:
    file = tmp_path / "hello.txt"
    file.write_text("hello\n")
    imported = _run(home, *(a.format(file=file) for a in args))
    assert imported == [], f"`mine {' '.join(args)}` imported {imported}; import them inside the function that needs them"


@pytest.fixture(scope="module")
def market(home: Path, sonar: SonarClient) -> Path:
    """The mine of `home` with a keystore account (its password unknown here), and a bounty on chain."""
    from eth_account import Account

    from mine.chain import BountyParams, ZERO_ADDRESS
    from mine.home import MineHome

    MineHome(home).import_account(Account.create().key.hex(), "not given to the commands")
    sonar.post_bounty(BountyParams(
        token=ZERO_ADDRESS, reward=10**18, stake=10**15, deadline=sonar.now() + 3600, eval_window=600,
        initial_score=500_000, target_score=900_000, higher_is_better=True,
        validation_commitment=b"\x11" * 32, model_digest=b"\x22" * 32, model_codec=0x70))
    return home


@pytest.mark.parametrize("args", [
    ("--dev-account", "1", "status"),
    ("status",),  # the keystore's address, read without its password
    ("bounties",),
    ("bounties", "--all"),
    ("--dev-account", "1", "withdraw"),
    ("withdraw",),
])
def test_read_only_commands_start_without_web3(market: Path, args: tuple[str, ...]) -> None:
    imported = _run(market, *args, watch=HEAVY + CHAIN)
    assert imported == [], (f"`mine {' '.join(args)}` imported {imported}; it only reads the chain: use "
                            "mine.views.ChainReader, and import web3 where something is signed")


def test_modules_of_fast_commands_import_without_torch() -> None:
    modules = ["mine.cli", "mine.chain", "mine.home", "mine.store", "mine.vault", "mine.versions", "mine.miner",
               "mine.manifest", "mine.scores", "mine.reasons"]
    code = f"import sys\nfor m in {modules!r}: __import__(m)\nprint(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120).stdout
    assert out.strip() == "[]"


def test_modules_of_read_only_commands_import_without_web3() -> None:
    modules = ["mine.cli", "mine.views", "mine.contract", "mine.overview", "mine.home", "mine.store", "mine.vault",
               "mine.versions", "mine.miner", "mine.manifest", "mine.scores", "mine.reasons", "mine.amounts",
               "mine.logs", "mine.retry", "mine.devnet"]
    code = f"import sys\nfor m in {modules!r}: __import__(m)\nprint(sorted(m for m in {HEAVY + CHAIN!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120).stdout
    assert out.strip() == "[]"
