"""The benchmarks at tiny sizes (`python -m bench.run --quick`), through the same code as `make bench`.

One quick run of every section, on the session's anvil (gas and chain snapshot and revert around
themselves), then checks of the results layout and of what must hold whatever the machine's speed:
deterministic gas, the training loops ending on the same weights, the FedAvg fallback's label.
Flower's separate venv is hidden (BENCH_FLWR_VENV points nowhere) so the run does not depend on
/tmp state; the worker then runs in-process as the labelled reimplementation.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from bench import gas as gas_bench
from bench import privacy as privacy_bench
from bench.run import SECTIONS, main, run_all

GAS_KEYS = {"post_eth", "post_erc20", "submit", "submit_erc20", "settle_accept", "settle_refund", "settle_forfeit",
            "settle_per_update_1", "settle_per_update_8", "settle_per_update_32", "withdraw", "withdraw_erc20",
            "close", "reveal_audit", "skip", "reclaim_stake", "submit_1st", "submit_1000th", "settle_1st",
            "settle_1000th", "sonar2017_submit", "sonar2017_evaluate"}


@pytest.fixture(scope="module")
def quick(rpc_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, Any], str, Path]]:
    """(results as written to results.json, the printed text, the results path) of one quick run."""
    tmp = tmp_path_factory.mktemp("bench")
    out = tmp / "results.json"
    console = Console(file=io.StringIO(), width=140)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENCH_FLWR_VENV", str(tmp / "no-flwr-venv"))
        run_all(quick=True, out=out, rpc_url=rpc_url, console=console)
    yield json.loads(out.read_text()), console.file.getvalue(), out


def test_every_section_ran(quick: tuple[dict[str, Any], str, Path]) -> None:
    results, text, _ = quick
    for section in SECTIONS:
        assert "error" not in results[section], f"{section}: {results[section].get('traceback')}"
    for title in ("Gas per transaction", "Throughput and overhead", "End to end", "Leakage of one miner's update", "Goals"):
        assert title in text
    assert results["quick"] is True
    assert set(results["seconds"]) == {*SECTIONS, "total"}


def test_results_layout(quick: tuple[dict[str, Any], str, Path]) -> None:
    results, _, _ = quick
    assert GAS_KEYS <= set(results["gas"])
    assert {"cid_mib_s", "sha256_mib_s", "ratio", "embedded_add_mib_s", "node_add_mib_s", "node_cat_mib_s"} \
        <= set(results["store"])
    assert {"mine_s", "bare_torch_s", "ratio"} <= set(results["train"])
    assert {"mine_s", "bare_torch_s", "ratio"} <= set(results["train"]["cnn"])
    assert results["train"]["cnn"]["model"] == "digits-cnn"
    assert {"final_score", "centralized_score", "malicious_accepted"} <= set(results["demo"]["cnn"])
    assert {"final_score", "centralized_score", "malicious_accepted"} <= set(results["demo"]["no_dp"])
    assert results["demo"]["no_dp"]["dp"] is False and results["demo"]["dp"] is True
    assert {"client_submissions_per_s", "raw_tx_per_s", "ratio"} <= set(results["chain"])
    assert {"timings_s", "final_score", "centralized_score", "malicious_accepted"} <= set(results["demo"])
    assert {"implementation", "fedavg_all", "fedavg_honest_only", "fedtrimmedavg_all", "krum_all", "ours"} \
        <= set(results["flower"])
    assert {"rows", "default_dp", "steps"} <= set(results["privacy"])
    assert {(r["case"], r["dp"]) for r in results["privacy"]["rows"]} == \
        {(c, dp) for c in ("n=1", "n=8", "n=32", "shards") for dp in (False, True)}
    assert {"seconds", "status_over_import_web3"} <= set(results["cli"])
    assert {"mine status", "python -c 'import web3'", "mine vault list"} <= set(results["cli"]["seconds"])
    assert {"client_tx_per_s", "raw_tx_per_s", "ratio"} <= set(results["chain"]["pipelined"])
    assert results["flower"]["same_attackers_as_demo"] is True
    assert {"cores", "cpu", "versions"} <= set(results["machine"])
    assert results["goals"], "no goals recorded"
    for name, goal in results["goals"].items():
        assert set(goal) == {"value", "goal", "met"}, name
        assert isinstance(goal["met"], bool), name


def test_gas_is_deterministic_and_flat(quick: tuple[dict[str, Any], str, Path]) -> None:
    g = quick[0]["gas"]
    for key in GAS_KEYS:
        # a whole transaction costs at least the 21k intrinsic gas; a round's share per update may cost less
        low = 5_000 if key.startswith("settle_per_update") else 21_000
        assert low < g[key] < 500_000, key
    # nothing loops over submissions: the execution gas of the n-th equals that of the 1st
    assert g["submit_1000th_exec"] == g["submit_1st_exec"]
    assert g["settle_1000th_exec"] == g["settle_1st_exec"]
    assert g["submit_1000th"] == g["submit"]
    # a round shares its fixed cost: per update, 32 cost less than 8, and 8 less than 1
    assert g["settle_per_update_32"] < g["settle_per_update_8"] < g["settle_per_update_1"]
    assert g["scale"]["nth_index"] == g["scale"]["submissions"] - 1


def test_measurements_are_sane(quick: tuple[dict[str, Any], str, Path]) -> None:
    results = quick[0]
    assert results["train"]["same_weights_as_bare"] is True
    assert results["train"]["cnn"]["same_weights_as_bare"] is True
    assert results["store"]["cid_mib_s"] > 0 and results["store"]["sha256_mib_s"] > 0
    assert results["store"]["node_skipped"] == "not run (--quick)"
    assert results["chain"]["client_submissions_per_s"] > 0 and results["chain"]["raw_tx_per_s"] > 0
    demo = results["demo"]
    assert 0.0 <= demo["final_score"] <= 1.0 and demo["timings_s"]["total"] > 0
    flower = results["flower"]
    assert flower["implementation"].startswith("FedAvg reimplementation (flwr not available: no venv with flwr")
    assert 0.0 <= flower["fedavg_all"]["final_accuracy"] <= 1.0


def test_gas_intrinsic_cost() -> None:
    assert gas_bench.intrinsic_gas(b"") == 21_000
    assert gas_bench.intrinsic_gas(b"\x00\x01") == 21_000 + 4 + 16
    assert 0 not in gas_bench.word("x", 1)


def test_an_at_chance_goal_holds_its_family_of_tests_to_one_percent() -> None:
    # three tests: each must stay above 0.01 / 3, so one p of 0.004 is chance, one of 0.003 is not
    assert privacy_bench.at_chance([0.004, 0.5, 0.9])
    assert not privacy_bench.at_chance([0.003, 0.5, 0.9])
    assert privacy_bench.at_chance([0.011]) and not privacy_bench.at_chance([0.009])
    assert not privacy_bench.at_chance([])


def test_cli_entry_point(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.json"
    assert main(["--quick", "--only", "store", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert "store" in data and "gas" not in data and "store_cid_vs_sha256" in data["goals"]
    assert "Goals" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--only", "nonsense"])


@pytest.mark.skipif(not (Path(__file__).resolve().parents[2] / ".venv-flower" / "bin" / "python").exists(),
                    reason="no .venv-flower (make bench builds it)")
def test_flower_strategies_agree_with_the_written_out_formulas(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bench import flower

    monkeypatch.setenv("BENCH_FLWR_VENV", str(Path(__file__).resolve().parents[2] / ".venv-flower"))
    real = flower.run(quick=True)
    assert real["flwr_version"] is not None and real["implementation"].startswith("Flower ")
    monkeypatch.setenv("BENCH_FLWR_VENV", str(tmp_path / "none"))
    plain = flower.run(quick=True)
    assert plain["flwr_version"] is None
    for key in ("fedavg_all", "fedavg_honest_only", "fedtrimmedavg_all", "krum_all"):
        assert real[key]["per_round"] == plain[key]["per_round"], key


def test_the_replicas_modelled_pay_follows_the_contracts_rules() -> None:
    """`bench.dp_demo.payouts`: pot = reward x gain / span (+ the forfeited stakes so far), shares of it
    capped at 35 % of the reward, a forfeit loses the stake, a clawback the miner's vesting rewards."""
    from bench.dp_demo import payouts
    from mine.policy import ACCEPTED, CONCENTRATED, NEGATIVE_CONTRIBUTION, NO_IMPROVEMENT, ItemVerdict, RoundDecision

    def v(index: int, bps: int = 0, code: int = ACCEPTED, refund: bool = False, claw: bool = False) -> ItemVerdict:
        return ItemVerdict(index, f"0x{index:040x}", bps, code if not bps else ACCEPTED, "", refund, clawback=claw)

    state = {"w": None}
    rounds = [  # 3 miners; initial 0.5, target 1.0: round 1 gains 0.25 (a pot of 5 ETH), round 2 0.05 (1 ETH)
        RoundDecision([v(0, 8_000), v(1, 2_000), v(2, code=NEGATIVE_CONTRIBUTION)], 0.5, 0.75, state, 1.0, 0.5),
        RoundDecision([v(3, 10_000), v(4, code=NO_IMPROVEMENT, refund=True), v(5, code=CONCENTRATED, claw=True)],
                      0.75, 0.80, state, 0.5, 0.4),
    ]
    nets = payouts(rounds, 3, higher_is_better=True, target=1.0)
    # miner 0: 80 % of 5 ETH is capped at 3.5 ETH, then all of (1 ETH + the 0.01 forfeited in round 1)
    assert nets[0] == pytest.approx(3.5 + 1.01)
    assert nets[1] == pytest.approx(1.0)  # 20 % of 5 ETH, then a refund
    assert nets[2] == pytest.approx(-0.02)  # two forfeits; nothing was vesting to claw back
    # lower-is-better scores (cross-entropy): the gain is the drop
    flipped = [RoundDecision(d.verdicts, 1 - d.score_before, 1 - d.score_after, d.new_state, 0, 0) for d in rounds]
    assert payouts(flipped, 3, higher_is_better=False, target=0.0) == pytest.approx(nets)
    # a clawback takes what the miner has vesting
    clawed = [rounds[0], RoundDecision([v(3, code=CONCENTRATED, claw=True)], 0.75, 0.75, None, 0.5, 0.5)]
    assert payouts(clawed, 3, higher_is_better=True, target=1.0)[0] == pytest.approx(-0.01)
