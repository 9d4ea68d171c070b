"""Deploy the Sonar marketplace: `brownie run scripts/deploy.py --network development`.

On `development` brownie starts anvil (or attaches to one already listening on 127.0.0.1:8545).
The address is printed and recorded in build/deployments/sonar-<chainid>.json, where `mine init`
finds it.
"""

from brownie import Sonar, accounts, chain

from mine.chain import record_deployment


def main():
    deployer = accounts[0]
    sonar = Sonar.deploy({"from": deployer})
    path = record_deployment(chain.id, sonar.address)
    print(f"Sonar deployed at {sonar.address} on chain {chain.id} (recorded in {path})")
    return sonar
