"""Deploy the Sonar marketplace on any brownie network.

    brownie run scripts/deploy.py --network development        # anvil started by brownie, accounts[0]
    brownie networks add Ethereum mynet host=RPC_URL chainid=ID   # once per network
    SONAR_DEPLOYER=deployer brownie run scripts/deploy.py --network mynet

The deployer is the brownie keystore account named by SONAR_DEPLOYER (`brownie accounts new ID`,
`brownie accounts generate ID` or `brownie accounts import ID KEYSTORE.json`), unlocked with
SONAR_DEPLOYER_PASSWORD (or a prompt in a terminal). Without SONAR_DEPLOYER the node's first unlocked
account deploys (accounts[0]: development, a local anvil); a public node has none, so it refuses.
The deployment is recorded once SONAR_CONFIRMATIONS (default 1) blocks confirm it.

The address is printed and recorded in build/deployments/sonar-<chainid>.json, where
`mine init --rpc URL` finds it.
"""

import os
import sys

import brownie.network.contract as brownie_contract
from brownie import Sonar, accounts, chain, network

from mine.chain import record_deployment


def _with_plain_sources(original):
    """brownie 1.22's `_add_deployment`, handed the sources it needs as a plain dict.

    brownie 1.22 ships `brownie.network.state` compiled with mypyc, which enforces the annotation
    `contract_sources: dict = contract._sources` at run time; a project contract's `_sources` is a
    `brownie.project.sources.Sources` object, so recording a deployment on a live network (brownie
    keeps them in ~/.brownie/deployments.db) raises `TypeError: dict object expected; got Sources`
    in brownie's confirmation thread: the contract is deployed but brownie does not remember it.
    This wrapper gives `_add_deployment` the contract's own sources as a dict for the call.
    """

    def add_deployment(contract, alias=None):
        sources = contract.__dict__.get("_sources")
        if sources is None or isinstance(sources, dict):
            return original(contract, alias)
        paths = contract._build.get("allSourcePaths", {}).values()
        plain = {path: sources.get(path) for path in paths}
        contract.__dict__["_sources"] = {path: text for path, text in plain.items() if text is not None}
        try:
            return original(contract, alias)
        finally:
            contract.__dict__["_sources"] = sources

    add_deployment.sonar_plain_sources = True
    return add_deployment


def _deployer():
    """The keystore account named by SONAR_DEPLOYER, else the node's first unlocked account."""
    name = os.environ.get("SONAR_DEPLOYER")
    if name:
        password = os.environ.get("SONAR_DEPLOYER_PASSWORD")
        if password is None and not sys.stdin.isatty():
            sys.exit("error: set SONAR_DEPLOYER_PASSWORD to unlock the deployer's keystore")
        return accounts.load(name, password=password)
    if len(accounts) == 0:
        sys.exit(
            f"error: network {network.show_active()} has no unlocked account: create a keystore "
            "(`brownie accounts generate deployer`), fund its address, and run with "
            "SONAR_DEPLOYER=deployer SONAR_DEPLOYER_PASSWORD=..."
        )
    return accounts[0]


def main():
    if not getattr(brownie_contract._add_deployment, "sonar_plain_sources", False):
        brownie_contract._add_deployment = _with_plain_sources(brownie_contract._add_deployment)
    deployer = _deployer()
    confirmations = int(os.environ.get("SONAR_CONFIRMATIONS", "1"))
    sonar = Sonar.deploy({"from": deployer, "required_confs": confirmations})
    path = record_deployment(chain.id, sonar.address, sonar.tx.block_number)
    print(f"Sonar deployed at {sonar.address} on chain {chain.id} by {deployer.address} (recorded in {path})")
    return sonar
