#!/usr/bin/env python3
"""List Sonar bounties with plain web3.py (no brownie): ABI from the build artifacts.

    python scripts/list_bounties.py --rpc http://127.0.0.1:8545 [--sonar ADDRESS]

Without --sonar, uses the address `scripts/deploy.py` recorded for the node's chain id.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from web3 import Web3

BUILD = Path(__file__).resolve().parent.parent / "build"
STATUS = ["none", "open", "completed", "closed"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rpc", default="http://127.0.0.1:8545", help="JSON-RPC URL of the node")
    parser.add_argument("--sonar", help="Sonar contract address (default: the recorded deployment)")
    args = parser.parse_args(argv)

    w3 = Web3(Web3.HTTPProvider(args.rpc))
    if not w3.is_connected():
        print(f"error: no node answers at {args.rpc}", file=sys.stderr)
        return 3
    address = args.sonar
    if address is None:
        record = BUILD / "deployments" / f"sonar-{w3.eth.chain_id}.json"
        if not record.exists():
            print(f"error: no recorded deployment for chain {w3.eth.chain_id}; pass --sonar", file=sys.stderr)
            return 2
        address = json.loads(record.read_text())["address"]
    abi = json.loads((BUILD / "contracts" / "Sonar.json").read_text())["abi"]
    sonar = w3.eth.contract(address=Web3.to_checksum_address(address), abi=abi)

    count = sonar.functions.bountyCount().call()
    print(f"{count} bounties on Sonar {address}")
    print(
        f"{'id':>4} {'status':<10} {'owner':<44} {'escrow (wei)':>22} {'best':>12} {'target':>12} {'subs':>5}"
        f" {'stake (wei)':>22} {'window':>8}"
    )
    for bounty_id in range(1, count + 1):
        # ISonar.Bounty: owner, token, status, higherIsBetter, auditable, auditRevealed, deadline,
        # evalWindow, stake, reward, escrow, forfeitPool, paid, burned, initialScore, targetScore,
        # bestScore, latestVersion, nextEval, submissions, ...
        b = sonar.functions.getBounty(bounty_id).call()
        owner, status, escrow, best, target, subs = b[0], STATUS[b[2]], b[10], b[16], b[15], b[19]
        stake, window = b[8], b[7]
        print(
            f"{bounty_id:>4} {status:<10} {owner:<44} {escrow:>22} {best:>12} {target:>12} {subs:>5}"
            f" {stake:>22} {window:>7}s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
