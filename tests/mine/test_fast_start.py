"""Commands that neither train nor evaluate start without torch (the CLI must answer in < 1 s).

Each command runs in a fresh interpreter against a real anvil; afterwards the interpreter reports
which heavy modules it imported. torch alone costs ~2.5 s, so one stray module-level import in the
path of `status`, `bounties`, `withdraw`, `vault`, `account` or `ipfs` shows up here.
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

PROBE = """
import json, sys
from mine.cli import cli
try:
    cli(sys.argv[1:], standalone_mode=False)
finally:
    sys.stderr.write("\\nMODULES " + json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)) + "\\n")
"""


def _run(home: Path, *args: str) -> list[str]:
    env = {**os.environ, "MINE_HOME": str(home)}
    proc = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), "--home", str(home), *args],
                          capture_output=True, text=True, env=env, timeout=120)
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


def test_modules_of_fast_commands_import_without_torch() -> None:
    modules = ["mine.cli", "mine.chain", "mine.home", "mine.store", "mine.vault", "mine.versions", "mine.miner",
               "mine.manifest", "mine.scores", "mine.reasons"]
    code = f"import sys\nfor m in {modules!r}: __import__(m)\nprint(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120).stdout
    assert out.strip() == "[]"
