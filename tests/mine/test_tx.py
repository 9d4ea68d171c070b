"""Real-chain behaviour of `mine.tx` / `mine.rpc` / `mine.logs` against real anvil processes.

A chain that mines a block every second with an EIP-1559 base fee (like a public chain), keys that
live only in encrypted keystores, a reorg forced with `anvil_reorg`, several processes sending from
one key, and a provider in front of anvil that rate-limits and refuses large log ranges.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.types import RPCEndpoint

from mine.chain import BountyParams, SonarClient, ZERO_ADDRESS, connect
from mine.cli import cli
from mine.devnet import anvil, dev_account, free_port
from mine.errors import ChainError, ChainUnreachableError
from mine.home import Config, MineHome
from mine.logs import deployment_block, read_logs
from mine.rpc import RetryingHTTPProvider, RetryPolicy
from mine.tx import GWEI, Sender, TxDroppedError, TxSettings
from mine.views import JsonRpc
from tests.mine.rpc_proxy import ProxyRules, rpc_proxy

PASSWORD = "keystore password"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def slow_chain() -> Iterator[str]:
    """An anvil that mines one block per second and has anvil's default 1 gwei EIP-1559 base fee."""
    with anvil(block_time=1, base_fee=None) as url:
        yield url


def _fund(w3: Web3, address: str, wei: int = 10**18) -> None:
    funder = dev_account(0)
    Sender(w3, funder).transact({"to": address, "value": wei, "gas": 21000}, label="fund")


def _keystore_account(tmp: Path, w3: Web3) -> tuple[MineHome, LocalAccount]:
    """A new key in a mine's encrypted keystore, loaded back with its password, funded with 1 ETH."""
    home = MineHome(tmp / "mine")
    home.init(Config())
    address = home.new_account(PASSWORD).address
    account = home.load_account(address, PASSWORD)
    _fund(w3, account.address)
    return home, account


def test_fees_are_eip1559_from_the_node_and_capped(slow_chain: str, tmp_path: Path) -> None:
    w3 = connect(slow_chain)
    _, account = _keystore_account(tmp_path, w3)
    base = int(w3.eth.get_block("latest")["baseFeePerGas"])
    assert base > 0
    fees = Sender(w3, account).fees()
    assert fees["maxFeePerGas"] >= 2 * base and fees["maxPriorityFeePerGas"] == int(w3.eth.max_priority_fee)
    cap_gwei = (base * 1.5) / GWEI
    capped = Sender(w3, account, TxSettings(max_fee_gwei=cap_gwei, confirmations=0))
    assert capped.fees()["maxFeePerGas"] == int(cap_gwei * GWEI)
    receipt = capped.transact({"to": dev_account(3).address, "value": 1, "gas": 21000})
    assert receipt["type"] == 2 and receipt["effectiveGasPrice"] <= int(cap_gwei * GWEI)
    with pytest.raises(ChainError, match="above your cap"):
        Sender(w3, account, TxSettings(max_fee_gwei=base / 2 / GWEI)).fees()


def test_confirmations_auto_and_waited_for(slow_chain: str, rpc_url: str, tmp_path: Path) -> None:
    assert Sender(connect(rpc_url), dev_account(0)).confirmations == 0  # automining dev chain
    w3 = connect(slow_chain)
    _, account = _keystore_account(tmp_path, w3)
    sender = Sender(w3, account)
    assert sender.confirmations == 2  # a chain with real block times
    receipt = sender.transact({"to": dev_account(3).address, "value": 1, "gas": 21000})
    assert w3.eth.block_number >= receipt["blockNumber"] + 2


def test_a_reorged_out_transaction_is_sent_again_and_paid_once(slow_chain: str, tmp_path: Path) -> None:
    w3 = connect(slow_chain)
    _, account = _keystore_account(tmp_path, w3)
    payee = dev_account(7).address
    before = w3.eth.get_balance(payee)
    sender = Sender(w3, account, TxSettings(confirmations=2, poll=0.02))
    pending = sender.send({"to": payee, "value": 12345, "gas": 21000}, label="pay")
    first: dict[str, object] = {}

    def reorg_it_out() -> None:  # as soon as the payment is in a block, replace that block by an empty one
        while True:
            try:
                receipt = w3.eth.get_transaction_receipt(pending.hash)
                break
            except Exception:  # noqa: BLE001 - TransactionNotFound until mined
                time.sleep(0.01)
        first["block"], first["hash"] = receipt["blockNumber"], receipt["blockHash"]
        depth = w3.eth.block_number - receipt["blockNumber"] + 1
        w3.provider.make_request("anvil_reorg", [depth, []])
        first["dropped"] = w3.eth.get_transaction_count(account.address) == 0

    thread = threading.Thread(target=reorg_it_out)
    thread.start()
    receipt = sender.wait(pending)
    thread.join()
    assert first["dropped"], "the reorg did not drop the payment; the test proves nothing"
    assert pending.reorgs >= 1
    assert receipt["blockHash"] != first["hash"]
    assert w3.eth.get_block(receipt["blockNumber"])["hash"] == receipt["blockHash"]  # canonical now
    assert w3.eth.get_transaction_count(account.address) == 1  # one nonce used: sent once, paid once
    assert w3.eth.get_balance(payee) - before == 12345


SEND_FROM_KEYSTORE = """
import sys
from pathlib import Path
from mine.chain import connect
from mine.home import MineHome
from mine.tx import Sender, TxSettings
home, url, address, payee, n = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
account = MineHome(home).load_account(address, "keystore password")
sender = Sender(connect(url), account, TxSettings(lock_dir=home / "locks", confirmations=0))
pending = [sender.send({"to": payee, "value": 1, "gas": 21000}) for _ in range(n)]
receipts = sender.wait_many(pending)
print(" ".join(str(p.nonce) for p in pending))
"""


def test_processes_sharing_a_key_never_reuse_a_nonce(rpc_url: str, tmp_path: Path) -> None:
    w3 = connect(rpc_url)
    home, account = _keystore_account(tmp_path, w3)
    procs = [subprocess.Popen([sys.executable, "-c", SEND_FROM_KEYSTORE, str(home.root), rpc_url, account.address,
                               dev_account(8).address, "5"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(3)]
    nonces = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        nonces += [int(n) for n in out.split()]
    assert sorted(nonces) == list(range(15))
    assert w3.eth.get_transaction_count(account.address) == 15


def test_send_many_pipelines_and_waits_once(slow_chain: str, tmp_path: Path) -> None:
    w3 = connect(slow_chain)
    _, account = _keystore_account(tmp_path, w3)
    sender = Sender(w3, account, TxSettings(confirmations=1))
    started = time.monotonic()
    pending = sender.send_many([{"to": dev_account(9).address, "value": i + 1, "gas": 21000} for i in range(10)])
    receipts = sender.wait_many(pending)
    assert [p.nonce for p in pending] == list(range(10))
    assert all(r["status"] == 1 for r in receipts)
    # ten transactions share blocks: far less than ten blocks (one wait per transaction would take ~20 s)
    assert len({r["blockNumber"] for r in receipts}) <= 2
    assert time.monotonic() - started < 8


def test_rate_limits_and_outages_are_retried_with_backoff(rpc_url: str) -> None:
    rules = ProxyRules(http_429=3, rpc_limited=2)
    with rpc_proxy(rpc_url, rules) as url:
        w3 = connect(url, retry=RetryPolicy(base=0.01))
        assert w3.eth.block_number >= 0
        assert rules.refused == {"http_429": 3, "rpc_limited": 2}
        assert w3.provider.retried >= 5  # type: ignore[attr-defined]
    with rpc_proxy(rpc_url, ProxyRules(http_429=100)) as url, pytest.raises(ChainUnreachableError, match="no Ethereum node"):
        connect(url, retry=RetryPolicy(retries=2, base=0.01))


@contextmanager
def _hanging_up_server() -> Iterator[str]:
    """A loopback server that accepts each connection and closes it unanswered (a dropped request)."""
    listener = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            with contextlib.suppress(OSError):
                conn, _ = listener.accept()
                conn.recv(65536)
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        done.set()
        listener.close()


def test_a_refused_connection_is_retried_twice_and_a_dropped_one_six_times() -> None:
    """Nothing listening fails fast (a stopped node does not start within the backoff); a dropped
    request (a provider hiccup) gets every retry. Both transports: web3's provider and the light reader."""
    policy = RetryPolicy(base=0.01)
    transports: list[Callable[[str], Any]] = [
        lambda url: RetryingHTTPProvider(url, policy=policy),
        lambda url: JsonRpc(url, policy=policy),
    ]
    for make in transports:
        refused = make(f"http://127.0.0.1:{free_port()}")
        with pytest.raises(OSError):
            _call(refused)
        assert refused.retried == policy.refused_retries == 2
        with _hanging_up_server() as url:
            dropped = make(url)
            with pytest.raises(OSError):
                _call(dropped)
        assert dropped.retried == policy.retries == 6


def _call(transport: RetryingHTTPProvider | JsonRpc) -> Any:
    if isinstance(transport, JsonRpc):
        return transport.request("eth_chainId")
    return transport.make_request(RPCEndpoint("eth_blockNumber"), [])


def test_events_are_read_in_bounded_block_ranges(sonar: SonarClient, rpc_url: str, chain_snapshot: None) -> None:
    posted = []
    for i in range(4):
        bounty_id, _ = sonar.post_bounty(BountyParams(
            token=ZERO_ADDRESS, reward=10**15, stake=10**12, deadline=sonar.now() + 3600, eval_window=600,
            initial_score=0, target_score=900_000, higher_is_better=True, validation_commitment=b"\x01" * 32,
            model_digest=bytes([i + 1]) * 32, model_codec=0,
        ))
        posted.append(bounty_id)
        sonar.w3.provider.make_request("anvil_mine", [7, 0])  # spread the events over many blocks
    rules = ProxyRules(max_log_range=8)
    with rpc_proxy(rpc_url, rules) as url:
        client = SonarClient(connect(url), sonar.address, log_range=1000, start_block=0)
        ids = [int(log["args"]["bountyId"]) for log in client.events("BountyPosted")]
    assert ids[-4:] == posted
    assert rules.refused["eth_getLogs"] >= 1  # the provider refused the wide window; the reader narrowed it
    # and without the proxy, small windows give the same answer as one big one
    assert [log["args"]["bountyId"] for log in SonarClient(sonar.w3, sonar.address, log_range=3).events("BountyPosted")] \
        == [log["args"]["bountyId"] for log in sonar.events("BountyPosted", from_block=0)]


def test_read_logs_fails_with_the_window_it_could_not_read() -> None:
    def fetch(lo: int, hi: int) -> list[int]:
        if lo <= 5 <= hi:
            raise ValueError("internal error")
        return list(range(lo, hi + 1))

    assert read_logs(lambda lo, hi: list(range(lo, hi + 1)), 0, 99, max_range=7) == list(range(100))
    with pytest.raises(ChainError, match="blocks 0..9"):
        read_logs(fetch, 0, 20, max_range=10)


def test_event_scans_start_at_the_deployment_block(rpc_url: str, tmp_path: Path) -> None:
    w3 = connect(rpc_url)
    w3.provider.make_request("anvil_mine", [25, 0])
    sonar = SonarClient.deploy(w3, dev_account(0))
    assert sonar.start_block > 25
    assert deployment_block(w3, sonar.address) == sonar.start_block
    assert deployment_block(w3, dev_account(5).address) == 0  # no code: scan from the start
    runner = CliRunner()
    result = runner.invoke(cli, ["--home", str(tmp_path / "m"), "init", "--rpc", rpc_url, "--sonar", sonar.address])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "m" / "config.json").read_text())["sonar_block"] == sonar.start_block


def test_a_dropped_transaction_whose_nonce_was_reused_is_reported(tmp_path: Path) -> None:
    with anvil() as url:
        w3 = connect(url)
        _, account = _keystore_account(tmp_path, w3)
        sender = Sender(w3, account, TxSettings(confirmations=0, poll=0.01))
        pending = sender.send({"to": dev_account(4).address, "value": 1, "gas": 21000}, label="pay")
        w3.eth.wait_for_transaction_receipt(pending.hash)
        w3.provider.make_request("anvil_reorg", [1, []])  # drop it ...
        other = {"to": dev_account(5).address, "value": 2, "gas": 21000, "nonce": pending.nonce,
                 "chainId": w3.eth.chain_id, **sender.fees()}
        w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(account.sign_transaction(other).raw_transaction))
        with pytest.raises(TxDroppedError, match="nonce 0 was used"):  # ... and reuse its nonce
            sender.wait(pending)
