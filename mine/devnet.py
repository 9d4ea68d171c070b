"""A local development chain: start a real anvil on a loopback port, and its well-known dev keys.

Used by tests, `mine demo` and the benchmarks. The keys are anvil's public test mnemonic: anyone can
spend from them, so they are for local chains only.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING


from mine.errors import ChainUnreachableError, ConfigError

if TYPE_CHECKING:  # eth_account is imported where a key is made or read (fast `mine vault`)
    from eth_account.signers.local import LocalAccount

DEV_MNEMONIC = "test test test test test test test test test test test junk"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def dev_account(index: int) -> LocalAccount:
    """The `index`-th funded account of a local anvil/ganache started with the dev mnemonic."""
    if index < 0:
        raise ConfigError(f"dev account index must be >= 0, got {index}")
    from eth_account import Account

    Account.enable_unaudited_hdwallet_features()
    return Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def anvil_binary() -> str:
    """Path of the real anvil binary (npm @foundry-rs/anvil), not npm's node wrapper."""
    local = PROJECT_ROOT / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"
    if local.exists():
        return str(local)
    found = shutil.which("anvil")
    if found:
        return found
    raise ConfigError("anvil not found: run `make setup` (installs npm @foundry-rs/anvil)")


def _wait_for_rpc(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ChainUnreachableError(f"anvil exited with code {proc.returncode} before answering on port {port}")
        with contextlib.suppress(OSError):
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        time.sleep(0.05)
    raise ChainUnreachableError(f"anvil did not answer on port {port} within {timeout:.0f} s")


@contextlib.contextmanager
def anvil(
    *, port: int | None = None, accounts: int = 30, block_time: float | None = None, timeout: float = 20.0,
    base_fee: int | None = 0,
) -> Iterator[str]:
    """Run anvil on 127.0.0.1 for the duration of the block; yields its RPC URL.

    The chain runs the shanghai fork (what the contracts are compiled for) with `accounts` funded
    dev accounts and a base fee of `base_fee` wei (0 by default; None: anvil's own, 1 gwei, which
    then follows EIP-1559 like a public chain). With `block_time` it mines a block every so many
    seconds instead of one per transaction. The process is killed on exit, also on errors.
    """
    port = port or free_port()
    cmd = [
        anvil_binary(),
        "--host", "127.0.0.1",
        "--port", str(port),
        "--hardfork", "shanghai",
        "--accounts", str(accounts),
        "--mnemonic", DEV_MNEMONIC,
        "--silent",
    ]
    if base_fee is not None:
        cmd += ["--block-base-fee-per-gas", str(base_fee)]
    if block_time:
        cmd += ["--block-time", str(block_time)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy())
    try:
        _wait_for_rpc(port, proc, timeout)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
