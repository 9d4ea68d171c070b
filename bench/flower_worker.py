"""FedAvg over prepared client shards, with Flower's own client and strategy classes when available.

    <python> bench/flower_worker.py TASK.npz OUT.json [--no-flwr]

Runs in a separate interpreter (the venv ``make bench`` builds, ``.venv-flower``) and therefore imports
nothing from ``mine`` or ``bench``: only numpy, torch and, unless ``--no-flwr``, flwr. The task file
(written by ``bench.flower.prepare``) holds each client's normalised ``X_i``/``y_i``, the validation
set, the initial weights ``w_0..w_k`` (state-dict order) and a JSON ``config``.

With flwr: every client is a ``flwr.client.NumPyClient`` whose ``fit`` trains locally; each round's
results are wrapped in ``flwr.common.FitRes`` and aggregated by a ``flwr.server.strategy`` class's
``aggregate_fit`` — the strategy code Flower's server runs, called in-process (Flower's simulation
engine needs Ray, which is not installed): ``FedAvg`` (example-weighted average), and the robust
``FedTrimmedAvg`` (coordinate-wise mean without the top and bottom ``beta``) and ``Krum`` (the update
closest to its n - f - 2 nearest neighbours, told the true number f of attackers). Without flwr the
same loop uses the same formulas written out here.

Local training matches ``mine.train.train``: Adam (fused) at the manifest's lr, batch size, epochs,
a per-epoch permutation from ``torch.Generator().manual_seed(seed)``, one torch thread.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

try:  # the Flower classes, when this interpreter has flwr
    if "--no-flwr" in sys.argv:
        raise ImportError("--no-flwr")
    import flwr
    from flwr.client import NumPyClient as _ClientBase
    from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
    from flwr.server.strategy import FedAvg, FedTrimmedAvg, Krum

    FLWR: str | None = flwr.__version__
except ImportError:
    _ClientBase = object  # type: ignore[assignment,misc]
    FLWR = None


def build(widths: list[int]) -> torch.nn.Sequential:
    """The manifest's MLP: Linear layers with ReLU between them (``mine.model._mlp``)."""
    layers: list[torch.nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers).float()


def get_weights(model: torch.nn.Module) -> list[np.ndarray]:
    return [v.detach().cpu().numpy().copy() for v in model.state_dict().values()]


def set_weights(model: torch.nn.Module, weights: list[np.ndarray]) -> None:
    keys = list(model.state_dict())
    model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32)) for k, w in zip(keys, weights)})


class DigitsClient(_ClientBase):  # type: ignore[misc,valid-type]
    """One data owner: trains the global weights on its shard (a Flower NumPyClient when flwr is here)."""

    def __init__(self, X: np.ndarray, y: np.ndarray, config: dict[str, Any]) -> None:
        self.X, self.y = torch.from_numpy(X), torch.from_numpy(y)
        self.config = config

    def get_parameters(self, config: dict[str, Any]) -> list[np.ndarray]:  # noqa: ARG002 - Flower API
        return get_weights(build(self.config["widths"]))

    def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple[list[np.ndarray], int, dict[str, Any]]:
        model = build(self.config["widths"])
        set_weights(model, parameters)
        opt = torch.optim.Adam(model.parameters(), lr=self.config["lr"], fused=True)
        gen = torch.Generator().manual_seed(int(config["seed"]))
        n, bs = self.X.shape[0], self.config["batch_size"]
        model.train()
        for _ in range(int(config["epochs"])):
            perm = torch.randperm(n, generator=gen)
            xs, ys = self.X[perm], self.y[perm]
            for i in range(0, n, bs):
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(model(xs[i:i + bs]), ys[i:i + bs]).backward()
                opt.step()
        return get_weights(model), int(n), {}


def weighted_average(results: list[tuple[list[np.ndarray], int]]) -> list[np.ndarray]:
    total = sum(n for _, n in results)
    return [sum(w[k] * (n / total) for w, n in results) for k in range(len(results[0][0]))]


#: Fraction cut from each end by FedTrimmedAvg (Flower's default).
TRIM_BETA = 0.2


def trimmed_average(results: list[tuple[list[np.ndarray], int]], beta: float = TRIM_BETA) -> list[np.ndarray]:
    """Coordinate-wise mean after dropping the int(beta * n) largest and smallest values (as Flower)."""
    n = len(results)
    cut = int(beta * n)
    out = []
    for k in range(len(results[0][0])):
        stacked = np.sort(np.stack([w[k] for w, _ in results]), axis=0)
        out.append(stacked[cut:n - cut].mean(axis=0))
    return out


def krum(results: list[tuple[list[np.ndarray], int]], num_malicious: int) -> list[np.ndarray]:
    """The update with the smallest sum of squared distances to its n - f - 2 nearest others (as Flower)."""
    flat = [np.concatenate([layer.ravel() for layer in w]) for w, _ in results]
    dist = np.array([[float(np.sum((a - b) ** 2)) for b in flat] for a in flat])
    closest = max(1, len(flat) - num_malicious - 2)
    scores = [np.sort(row)[1:closest + 1].sum() for row in dist]
    return results[int(np.argmin(scores))][0]


def make_strategy(name: str, num_malicious: int) -> Any:
    """Flower's strategy object for `name` (flwr only)."""
    quiet = {"fit_metrics_aggregation_fn": lambda metrics: {}}
    if name == "fedavg":
        return FedAvg(**quiet)
    if name == "fedtrimmedavg":
        return FedTrimmedAvg(beta=TRIM_BETA, **quiet)
    if name == "krum":
        return Krum(num_malicious_clients=num_malicious, num_clients_to_keep=0, **quiet)
    raise ValueError(f"unknown strategy {name!r}")


def aggregate_plain(name: str, results: list[tuple[list[np.ndarray], int]], num_malicious: int) -> list[np.ndarray]:
    if name == "fedavg":
        return weighted_average(results)
    if name == "fedtrimmedavg":
        return trimmed_average(results)
    if name == "krum":
        return krum(results, num_malicious)
    raise ValueError(f"unknown strategy {name!r}")


def accuracy(widths: list[int], weights: list[np.ndarray], X: np.ndarray, y: np.ndarray) -> float:
    model = build(widths)
    set_weights(model, weights)
    model.eval()
    with torch.inference_mode():
        pred = model(torch.from_numpy(X)).argmax(dim=1).numpy()
    return float((pred == y).mean())


def federate(task: dict[str, np.ndarray], clients_used: list[int], *, use_flwr: bool,
             strategy_name: str = "fedavg") -> dict[str, Any]:
    cfg = json.loads(str(task["config"]))
    widths = cfg["widths"]
    clients = {i: DigitsClient(task[f"X_{i}"], task[f"y_{i}"], cfg) for i in clients_used}
    weights = [task[f"w_{k}"].copy() for k in range(cfg["n_weights"])]
    num_malicious = len(set(cfg["malicious"]) & set(clients_used))
    strategy = make_strategy(strategy_name, num_malicious) if use_flwr else None
    per_round = []
    first = clients_used[0]  # warm-up (torch's first kernels and allocations), not timed
    clients[first].fit(weights, {"epochs": 1, "seed": 0})
    started = time.perf_counter()
    for rnd in range(cfg["rounds"]):
        results = []
        for i in clients_used:  # same seeds as the demo's miners
            fit_config = {"epochs": cfg["epochs"], "seed": cfg["seed"] + 1000 * rnd + i}
            results.append(clients[i].fit(weights, fit_config)[:2])
        if strategy is not None:
            fit_res = [(None, FitRes(Status(Code.OK, ""), ndarrays_to_parameters(w), n, {})) for w, n in results]
            aggregated, _ = strategy.aggregate_fit(rnd + 1, fit_res, [])
            weights = parameters_to_ndarrays(aggregated)
        else:
            weights = aggregate_plain(strategy_name, results, num_malicious)
        per_round.append(round(accuracy(widths, weights, task["X_val"], task["y_val"]), 4))
    wall = time.perf_counter() - started
    return {"final_accuracy": per_round[-1], "per_round": per_round, "wall_s": round(wall, 3),
            "clients": len(clients_used), "strategy": strategy_name}


def main(argv: list[str]) -> int:
    task_path, out_path = argv[0], argv[1]
    use_flwr = FLWR is not None and "--no-flwr" not in argv
    torch.set_num_threads(1)
    with np.load(task_path, allow_pickle=False) as npz:
        task = {k: npz[k] for k in npz.files}
    cfg = json.loads(str(task["config"]))
    everyone = list(range(cfg["clients"]))
    honest = [i for i in everyone if i not in set(cfg["malicious"])]
    out = {
        "flwr_version": FLWR if use_flwr else None,
        "torch_version": torch.__version__,
        "with_attackers": federate(task, everyone, use_flwr=use_flwr),
        "honest_only": federate(task, honest, use_flwr=use_flwr),
        "fedtrimmedavg_all": federate(task, everyone, use_flwr=use_flwr, strategy_name="fedtrimmedavg"),
        "krum_all": federate(task, everyone, use_flwr=use_flwr, strategy_name="krum"),
    }
    with open(out_path, "w") as fh:
        json.dump(out, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
