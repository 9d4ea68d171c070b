"""mine — the data owner's and model owner's client for the Sonar bounty marketplace.

Data flows one way: owner → (chain, store) → miner → (chain, store) → owner. Modules are the nouns
of that flow: `chain` (contract access), `store` (content-addressed bytes), `vault` (data that never
leaves), `model` (declarative architecture + safetensors), `train`, `evaluate`, `policy`, `cli`.
"""

__version__ = "0.1.0"
