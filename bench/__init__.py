"""Benchmarks of Sonar + mine: `python -m bench.run [--quick] [--out bench/results.json]` (or `make bench`).

Every figure is reported next to a baseline measured in the same run (machines are noisy):

* ``bench.gas``    — gas per transaction from receipts on a fresh anvil; 1st vs 1000th submission;
                     OpenMined's 2017 Sonar layout (contracts/bench/Sonar2017.sol) as the baseline;
* ``bench.chain``  — submissions per second through ``SonarClient`` vs raw signed ETH transfers;
* ``bench.store``  — CID computation, embedded and IPFS-node add/cat vs ``hashlib.sha256``;
* ``bench.train``  — ``mine.train.train`` vs a bare torch loop over the same tensors;
* ``bench.demo``   — the ``mine demo`` scenario end to end (time split and quality);
* ``bench.flower`` — FedAvg on the same split with Flower (in a separate venv) or a reimplementation;
* ``bench.report`` — the table, the goals and ``bench/results.json``.
"""
