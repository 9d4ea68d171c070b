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


#: Addresses of the first dev accounts (m/44'/60'/0'/0/N of DEV_MNEMONIC), as anvil lists them: deriving
#: one takes eth_account and ~0.5 s, reading who an account is should not (tests check the table).
DEV_ADDRESSES = (
    "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",  # 0
    "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",  # 1
    "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",  # 2
    "0x90F79bf6EB2c4f870365E785982E1f101E93b906",  # 3
    "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65",  # 4
    "0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc",  # 5
    "0x976EA74026E726554dB657fA54763abd0C3a0aa9",  # 6
    "0x14dC79964da2C08b23698B3D3cc7Ca32193d9955",  # 7
    "0x23618e81E3f5cdF7f54C3d65f7FBc0aBf5B21E8f",  # 8
    "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720",  # 9
    "0xBcd4042DE499D14e55001CcbB24a551F3b954096",  # 10
    "0x71bE63f3384f5fb98995898A86B02Fb2426c5788",  # 11
    "0xFABB0ac9d68B0B445fB7357272Ff202C5651694a",  # 12
    "0x1CBd3b2770909D4e10f157cABC84C7264073C9Ec",  # 13
    "0xdF3e18d64BC6A983f673Ab319CCaE4f1a57C7097",  # 14
    "0xcd3B766CCDd6AE721141F452C550Ca635964ce71",  # 15
    "0x2546BcD3c84621e976D8185a91A922aE77ECEc30",  # 16
    "0xbDA5747bFD65F08deb54cb465eB87D40e51B197E",  # 17
    "0xdD2FD4581271e230360230F9337D5c0430Bf44C0",  # 18
    "0x8626f6940E2eb28930eFb4CeF49B2d1F2C9C1199",  # 19
    "0x09DB0a93B389bEF724429898f539AEB7ac2Dd55f",  # 20
    "0x02484cb50AAC86Eae85610D6f4Bf026f30f6627D",  # 21
    "0x08135Da0A343E492FA2d4282F2AE34c6c5CC1BbE",  # 22
    "0x5E661B79FE2D3F6cE70F5AAC07d8Cd9abb2743F1",  # 23
    "0x61097BA76cD906d2ba4FD106E757f7Eb455fc295",  # 24
    "0xDf37F81dAAD2b0327A0A50003740e1C935C70913",  # 25
    "0x553BC17A05702530097c3677091C5BB47a3a7931",  # 26
    "0x87BdCE72c06C21cd96219BD8521bDF1F42C78b5e",  # 27
    "0x40Fc963A729c542424cD800349a7E4Ecc4896624",  # 28
    "0x9DCCe783B6464611f38631e6C851bf441907c710",  # 29
)


def dev_address(index: int) -> str:
    """The address of `dev_account(index)`, without deriving its key when it is one of the usual ones."""
    if 0 <= index < len(DEV_ADDRESSES):
        return DEV_ADDRESSES[index]
    return dev_account(index).address


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


def _wait_for_rpc(port: int, proc: subprocess.Popen[bytes], timeout: float, owner: int | None = None) -> None:
    """Wait until something answers on `port` — with `owner`, until that process listens there (another
    process on a port we picked as free would otherwise pass for our anvil)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ChainUnreachableError(f"anvil exited with code {proc.returncode} before answering on port {port}")
        with contextlib.suppress(OSError):
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                if owner is None or listens(port, owner) is not False:
                    return
        time.sleep(0.05)
    raise ChainUnreachableError(f"anvil did not answer on port {port} within {timeout:.0f} s")


def listens(port: int, pid: int) -> bool | None:
    """Whether process `pid` holds the listening socket on 127.0.0.1:`port` (Linux /proc); None: unknown."""
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
        fds = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
    except OSError:
        return None
    wanted = f"0100007F:{port:04X}"
    inodes = {f"socket:[{cols[9]}]" for cols in (line.split() for line in lines)
              if len(cols) > 9 and cols[1] == wanted and cols[3] == "0A"}  # 0A: LISTEN
    return bool(inodes) and any(fd in inodes for fd in fds)


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
    Without a `port`, a free one is picked; if another process takes it before anvil binds it,
    anvil exits at once and another port is tried (up to 3).
    """
    options = ["--hardfork", "shanghai", "--accounts", str(accounts), "--mnemonic", DEV_MNEMONIC, "--silent"]
    if base_fee is not None:
        options += ["--block-base-fee-per-gas", str(base_fee)]
    if block_time:
        options += ["--block-time", str(block_time)]
    attempts = 1 if port else 3
    for attempt in range(1, attempts + 1):
        chosen = port or free_port()
        proc = subprocess.Popen([anvil_binary(), "--host", "127.0.0.1", "--port", str(chosen), *options],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy())
        try:
            _wait_for_rpc(chosen, proc, timeout, owner=proc.pid if not port else None)
            break
        except ChainUnreachableError:
            taken = proc.poll() is not None or listens(chosen, proc.pid) is False  # None: cannot tell
            _stop(proc)
            if not taken or attempt == attempts:
                raise
    try:
        yield f"http://127.0.0.1:{chosen}"
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
