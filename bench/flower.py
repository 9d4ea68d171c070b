"""Flower side by side: FedAvg on the demo's exact digits split, model, rounds and local training.

The task is prepared here, in the project venv, from the same code paths as ``mine demo``: the
stratified 75/25 split, the Dirichlet(1.0) shards of 8 miners, the same 2 label-flipping miners
(same seeds), the manifest's normalisation and the same initial weights (``build_model(seed)``).
It is written to an ``.npz`` and handed to ``bench/flower_worker.py``:

* in a separate venv that has ``flwr`` (``$BENCH_FLWR_VENV``, default ``.venv-flower`` in the project,
  which ``make bench`` builds from ``bench/requirements-flower.txt``: pinned flwr and the project's
  CPU torch), run as a subprocess: Flower's ``NumPyClient`` + its strategies' ``aggregate_fit``,
  in-process (no Ray). The project venv is never touched (brownie's pins clash with flwr's);
* without that venv, the same worker runs in this interpreter with the formulas written out,
  labelled "FedAvg reimplementation (flwr not available: <reason>)".

Runs: FedAvg with all 8 clients (the 2 label-flippers included — FedAvg has no defence), FedAvg with
the 6 honest clients only, and Flower's robust strategies FedTrimmedAvg and Krum with all 8 clients
(the demo's attacks). They are compared with the demo's final score and wall time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mine import attacks, datasets
from mine.demo import DIRICHLET_ALPHA, VALIDATION_FRACTION, DemoSettings
from mine.model import build_model, default_manifest, prepare_inputs, with_normalization

WORKER = Path(__file__).resolve().parent / "flower_worker.py"
DEFAULT_VENV = str(Path(__file__).resolve().parent.parent / ".venv-flower")
TIMEOUT = 300


def prepare(s: DemoSettings, path: Path) -> dict[str, Any]:
    """Write the demo's split, shards, attackers and initial model as a worker task; return its config."""
    if s.dataset != "digits":
        raise ValueError("the Flower comparison is written for the digits MLP")
    rng = np.random.default_rng(s.seed)  # the demo draws its malicious miners first from this generator
    data = datasets.load(s.dataset)
    split = datasets.train_validation_split(data.X, data.y, validation_fraction=VALIDATION_FRACTION, seed=s.seed,
                                            task=data.task)
    shards = datasets.dirichlet_shards(split.y_train, s.miners, alpha=DIRICHLET_ALPHA, seed=s.seed, min_size=10,
                                       task=data.task)
    malicious = sorted(int(i) for i in rng.choice(s.miners, size=s.malicious, replace=False))
    manifest = with_normalization(default_manifest(s.dataset), split.X_val)
    arrays: dict[str, np.ndarray] = {}
    for i, idx in enumerate(shards):
        X_m, y_m = split.X_train[idx], split.y_train[idx]
        if i in malicious and s.attack == "label_flip":
            y_m = attacks.label_flip(y_m, num_classes=manifest.num_classes, seed=s.seed + i)
        arrays[f"X_{i}"] = prepare_inputs(manifest, X_m).numpy()
        arrays[f"y_{i}"] = np.asarray(y_m, dtype=np.int64)
    arrays["X_val"] = prepare_inputs(manifest, split.X_val).numpy()
    arrays["y_val"] = np.asarray(split.y_val, dtype=np.int64)
    state = build_model(manifest, seed=s.seed).state_dict()
    for k, v in enumerate(state.values()):
        arrays[f"w_{k}"] = v.detach().numpy().copy()
    widths = [manifest.layers[0]["in_features"]] + [l["out_features"] for l in manifest.layers if l["type"] == "Linear"]
    tr = manifest.training
    config = {"clients": s.miners, "malicious": malicious if s.attack == "label_flip" else [], "rounds": s.rounds,
              "epochs": int(tr["epochs"]), "lr": float(tr["lr"]), "batch_size": int(tr["batch_size"]),
              "optimizer": tr["optimizer"], "seed": s.seed, "widths": widths, "n_weights": len(state)}
    arrays["config"] = np.array(json.dumps(config))
    np.savez(path, **arrays)
    return config


def flwr_python() -> tuple[str | None, str]:
    """The separate venv's python, or (None, why not)."""
    venv = Path(os.environ.get("BENCH_FLWR_VENV", DEFAULT_VENV))
    python = venv / "bin" / "python"
    if not python.exists():
        return None, f"no venv with flwr at {venv} (`make bench` builds it: make .venv-flower/.installed)"
    return str(python), ""


def run(*, quick: bool = False, demo: dict[str, Any] | None = None) -> dict[str, Any]:
    """FedAvg on the demo's task (the quick demo's sizes with ``quick``); compared with ``demo`` if given."""
    from bench.demo import QUICK

    s = DemoSettings(**(QUICK if quick else {}))
    python, probe = flwr_python()
    with tempfile.TemporaryDirectory(prefix="bench-flower-") as tmp:
        task, out = Path(tmp) / "task.npz", Path(tmp) / "out.json"
        config = prepare(s, task)
        started = time.perf_counter()
        if python is not None:
            proc = subprocess.run([python, str(WORKER), str(task), str(out)], capture_output=True, text=True,
                                  timeout=TIMEOUT, check=False, cwd=tmp)
            if proc.returncode != 0:
                python, probe = None, f"the worker failed in {python}: {proc.stderr.strip()[-400:]}"
            else:
                result = json.loads(out.read_text())
                if result["flwr_version"] is None:
                    label = f"FedAvg reimplementation (flwr not available: {python} cannot import flwr)"
                else:
                    label = f"Flower {result['flwr_version']} (NumPyClient + strategy.aggregate_fit, in-process; " \
                            f"separate venv {Path(python).parent.parent}, torch {result['torch_version']})"
        if python is None:
            from bench import flower_worker

            threads = torch.get_num_threads()
            try:
                flower_worker.main([str(task), str(out), "--no-flwr"])
            finally:
                torch.set_num_threads(threads)
            result = json.loads(out.read_text())
            label = f"FedAvg reimplementation (flwr not available: {probe})"
        process_s = time.perf_counter() - started
    report: dict[str, Any] = {
        "implementation": label, "flwr_version": result["flwr_version"],
        "rounds": config["rounds"], "clients": config["clients"], "malicious_clients": config["malicious"],
        "local_epochs": config["epochs"], "optimizer": f"{config['optimizer']} lr={config['lr']}",
        "batch_size": config["batch_size"],
        "fedavg_all": result["with_attackers"], "fedavg_honest_only": result["honest_only"],
        "fedtrimmedavg_all": result["fedtrimmedavg_all"], "krum_all": result["krum_all"],
        "process_s": round(process_s, 2),
    }
    if demo is not None:
        ours = demo["final_score"]
        report["ours"] = {"final_score": ours, "wall_s": demo["timings_s"]["total"], "train_s": demo["timings_s"]["train"],
                          "malicious_accepted": demo["malicious_accepted"]}
        report["accuracy_ours_minus_fedavg_all"] = round(ours - result["with_attackers"]["final_accuracy"], 4)
        report["accuracy_ours_minus_fedavg_honest"] = round(ours - result["honest_only"]["final_accuracy"], 4)
        report["same_attackers_as_demo"] = set(demo.get("malicious_miners", [])) == {f"miner{i}" for i in config["malicious"]}
        report["wall_ours_over_fedavg_all"] = round(demo["timings_s"]["total"] / result["with_attackers"]["wall_s"], 2)
    return report


if __name__ == "__main__":  # python -m bench.flower [--quick]
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
