"""Chain throughput: submissions per second through `SonarClient` vs raw signed transfers.

Both sides run against the same anvil (automine), from the same 20 miner accounts
(``mine.devnet.dev_account(1..20)``) taken round-robin, and both sign locally and wait for each
transaction's receipt before sending the next — the way a miner's client works:

* client: ``SonarClient.submit`` (the client also estimates gas, reads the gas price and decodes
  the event) — a submission is one transaction (v1's commit–reveal took two);
* raw: a 1-wei ETH transfer, built by hand (explicit nonce, gas 21,000, cached gas price and chain
  id), signed with ``eth_account``, ``send_raw_transaction``, ``wait_for_transaction_receipt`` with
  the client's poll interval (50 ms; anvil does not always have the receipt at the first poll).

``rpcs_per_tx`` counts the JSON-RPC requests each side makes per transaction, by method.

The ratio compares transactions per second (client tx/s = submissions/s, raw runs send as many
transactions as the client run next to it). Runs come in adjacent pairs (client, raw; raw, client;
...); the figure is the median over pairs of the ratio, the rates are medians too (the machine's
load drifts: two runs next to each other see the same machine).
"""

from __future__ import annotations

import collections
import contextlib
import statistics
import time
from collections.abc import Iterator
from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import Web3

from mine.chain import BountyParams, SonarClient, ZERO_ADDRESS
from mine.devnet import dev_account
from bench.gas import CODEC_MODEL, CODEC_UPDATE, on_chain, word

MINERS = 20
STAKE = 10**15
GOAL = 0.5
TXS = 1  # transactions per submission (v2: submit)
POLL_LATENCY = 0.05  # the receipt polling interval SonarClient uses: same waiting policy on both sides


def _bounty(owner: SonarClient) -> int:
    params = BountyParams(token=ZERO_ADDRESS, reward=10**18, stake=STAKE, deadline=owner.now() + 30 * 86_400,
                          eval_window=30 * 86_400, initial_score=100_000, target_score=900_000,
                          higher_is_better=True, validation_commitment=word("val", 0),
                          model_digest=word("model", 0), model_codec=CODEC_MODEL)
    bounty_id, _ = owner.post_bounty(params)
    return bounty_id


def client_run(clients: list[SonarClient], bounty_id: int, submissions: int, offset: int) -> float:
    """Seconds for `submissions` submissions through the client."""
    for client in clients:
        client.reset_nonce()  # the raw run sent from the same accounts
    started = time.perf_counter()
    for n in range(submissions):
        client = clients[n % len(clients)]
        client.submit(bounty_id, word("digest", offset + n), CODEC_UPDATE, 0, stake=STAKE)
    return time.perf_counter() - started


def raw_run(w3: Web3, accounts: list[LocalAccount], txs: int) -> float:
    """Seconds for `txs` locally signed 1-wei transfers, each waited for."""
    chain_id, gas_price = w3.eth.chain_id, w3.eth.gas_price
    sink = dev_account(0).address
    started = time.perf_counter()
    # like the client, which asks each account's nonce once (then caches it)
    nonces = {a.address: w3.eth.get_transaction_count(a.address, "pending") for a in accounts}
    for n in range(txs):
        account = accounts[n % len(accounts)]
        tx = {"to": sink, "value": 1, "gas": 21_000, "gasPrice": gas_price, "nonce": nonces[account.address],
              "chainId": chain_id}
        signed = account.sign_transaction(tx)
        receipt = w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(signed.raw_transaction),
                                                      timeout=60, poll_latency=POLL_LATENCY)
        if receipt["status"] != 1:
            raise RuntimeError("a raw transfer reverted")
        nonces[account.address] += 1
    return time.perf_counter() - started


@contextlib.contextmanager
def counting_rpcs(w3: Web3) -> Iterator[collections.Counter[str]]:
    """Count JSON-RPC requests by method while the block runs."""
    counts: collections.Counter[str] = collections.Counter()
    provider = w3.provider
    original = provider._make_request  # HTTPProvider: one call per request that reaches the node

    def _make_request(method: Any, request_data: bytes) -> Any:
        counts[str(method)] += 1
        return original(method, request_data)

    provider._make_request = _make_request  # type: ignore[method-assign]
    try:
        yield counts
    finally:
        del provider._make_request  # back to the class's method


def rpcs_per_tx(w3: Web3, clients: list[SonarClient], accounts: list[LocalAccount], bounty_id: int,
                submissions: int) -> dict[str, dict[str, float]]:
    """JSON-RPC requests per transaction of each side, by method (one short run of each)."""
    with counting_rpcs(w3) as counts:
        client_run(clients, bounty_id, submissions, 2 * 10**7)
    client = {k: round(v / (TXS * submissions), 2) for k, v in sorted(counts.items())}
    with counting_rpcs(w3) as counts:
        raw_run(w3, accounts, TXS * submissions)
    raw = {k: round(v / (TXS * submissions), 2) for k, v in sorted(counts.items())}
    return {"client": {"total": round(sum(client.values()), 2), **client},
            "raw": {"total": round(sum(raw.values()), 2), **raw}}


def measure(w3: Web3, *, submissions: int, repeats: int) -> dict[str, Any]:
    accounts = [dev_account(i) for i in range(1, MINERS + 1)]
    owner = SonarClient.deploy(w3, dev_account(0))
    bounty_id = _bounty(owner)
    clients = [owner.with_account(a) for a in accounts]
    client_run(clients, bounty_id, min(MINERS, submissions), 10**7)  # warm-up: every account once
    raw_run(w3, accounts, MINERS)
    client_s, raw_s = [], []
    for r in range(repeats):
        if r % 2:
            raw_s.append(raw_run(w3, accounts, TXS * submissions))
        client_s.append(client_run(clients, bounty_id, submissions, r * submissions))
        if not r % 2:
            raw_s.append(raw_run(w3, accounts, TXS * submissions))
    client_sub_per_s = submissions / statistics.median(client_s)
    raw_tx_per_s = TXS * submissions / statistics.median(raw_s)
    return {
        "client_submissions_per_s": round(client_sub_per_s, 2),
        "client_tx_per_s": round(TXS * client_sub_per_s, 2),
        "raw_tx_per_s": round(raw_tx_per_s, 2),
        "ratio": round(statistics.median(r / c for r, c in zip(raw_s, client_s)), 3),
        "ratio_of_best_rates": round(min(raw_s) / min(client_s), 3),
        "ratio_counts": "client tx/s (1 per submission: submit) / raw signed transfers per s, "
                        "median over adjacent pairs of runs",
        "rpcs_per_tx": rpcs_per_tx(w3, clients, accounts, bounty_id, min(submissions, MINERS)),
        "submissions_per_run": submissions, "runs": repeats, "miners": MINERS,
        "client_runs_s": [round(s, 3) for s in client_s], "raw_runs_s": [round(s, 3) for s in raw_s],
    }


def goals(c: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {"chain_client_vs_raw": {"value": c["ratio"], "goal": f">= {GOAL}x raw tx/s", "met": c["ratio"] >= GOAL}}


def run(*, quick: bool = False, rpc_url: str | None = None) -> dict[str, Any]:
    """On ``rpc_url`` (needs >= 21 dev accounts; snapshot/revert around the run) or a fresh anvil."""
    sizes = {"submissions": 10, "repeats": 1} if quick else {"submissions": 50, "repeats": 6}
    return on_chain(measure, rpc_url=rpc_url, accounts=MINERS + 1 + 9, **sizes)
