"""Templates for any dataset and owner-named subgroups, end to end.

A table whose column names come from no bundled schema, with a `hospital` group column: the owner
registers it with `--group hospital`, writes a manifest with `mine model template --from-dataset`,
posts a bounty; a miner trains on its own table and submits; the owner's evaluation accepts it —
all through the CLI against a real anvil. The group column never reaches the model; an update that
hurts one hospital beyond the tolerance is rejected with that group's name in the reason.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner, Result

from mine import model as M
from mine.chain import SonarClient, SubmissionStatus, connect
from mine.cli import cli
from mine.devnet import dev_account
from mine.errors import VaultError
from mine.home import Config, MineHome
from mine.owner import OwnedBounty
from mine.policy import SUBGROUP_REGRESSION, DefaultPolicy
from mine.vault import Vault, load_validation

COLUMNS = ["blood_pressure", "heart_rate", "age_years", "cholesterol", "bmi"]


def _table(path: Path, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, len(COLUMNS)))
    hospital = rng.integers(0, 3, n)
    y = ((X[:, 0] + 2 * X[:, 1] - X[:, 3]) > 0).astype(int)
    lines = [",".join(COLUMNS + ["hospital", "outcome"])]
    lines += [",".join(f"{v:.6f}" for v in X[i]) + f",{hospital[i]},{y[i]}" for i in range(n)]
    path.write_text("\n".join(lines) + "\n")


def _run(runner: CliRunner, home: Path, rpc: str, sonar: str, store: str, dev: int, *args: str) -> Result:
    result = runner.invoke(cli, ["--home", str(home), "--rpc", rpc, "--sonar", sonar, "--store", store,
                                 "--dev-account", str(dev), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_template_from_an_arbitrary_csv_posts_a_bounty_a_miner_trains_and_the_owner_accepts(
        rpc_url: str, tmp_path: Path) -> None:
    # Prepare: a chain, an owner and a miner mine, each with its own table
    sonar = SonarClient.deploy(connect(rpc_url), dev_account(0))
    store = f"embedded:{tmp_path / 'blocks'}"
    runner = CliRunner()
    owner_home, miner_home = tmp_path / "owner", tmp_path / "miner"
    val_csv, shard_csv = tmp_path / "val.csv", tmp_path / "shard.csv"
    _table(val_csv, 240, seed=1)
    _table(shard_csv, 400, seed=2)

    def owner(*args: str) -> Result:
        return _run(runner, owner_home, rpc_url, sonar.address, store, 0, *args)

    def miner(*args: str) -> Result:
        return _run(runner, miner_home, rpc_url, sonar.address, store, 1, *args)

    owner("init", "--rpc", rpc_url, "--sonar", sonar.address)
    miner("init", "--rpc", rpc_url, "--sonar", sonar.address)
    owner("vault", "add", "clinic-val", str(val_csv), "--target", "outcome", "--group", "hospital")
    miner("vault", "add", "records", str(shard_csv), "--target", "outcome")

    # Execute: template → bounty → train → submit → evaluate, all through the CLI
    text = owner("model", "template", "--from-dataset", "clinic-val", "--hidden", "16").output
    manifest = M.Manifest.from_json(text.encode())
    model_path = tmp_path / "clinic.json"
    model_path.write_text(text)
    posted = owner("bounty", "create", "--model", str(model_path), "--validation", "clinic-val", "--reward", "1ether",
                   "--target", "0.99", "--stake", "0.01ether", "--seed", "3")
    bounty_id = int(re.search(r"bounty (\d+) posted", posted.output).group(1))  # type: ignore[union-attr]
    miner("train", str(bounty_id), "--dataset", "records", "--epochs", "10", "--seed", "1")
    miner("submit", str(bounty_id))
    evaluated = owner("evaluate", str(bounty_id))

    # Assert: the manifest is the table's (no group column), and the update was accepted
    assert manifest.features == COLUMNS and manifest.target == "outcome" and manifest.num_classes == 2
    assert "hospital" not in text
    assert manifest.normalization is not None
    assert "accepted 1 of 1" in evaluated.output, evaluated.output
    assert "version 1 (accuracy" in evaluated.output  # per-group scores of the new version
    assert all(f"hospital={h} " in evaluated.output for h in range(3))
    from mine.cli import bounty as bounty_commands

    if "reveal" in bounty_commands.commands:  # Sonar v2: the audit bundle is revealed before anyone replays
        owner("bounty", "reveal", str(bounty_id))
    audited = runner.invoke(cli, ["--home", str(miner_home), "--rpc", rpc_url, "--sonar", sonar.address, "--store", store,
                                  "audit", str(bounty_id)])  # no --group: the audit bundle names the column
    assert audited.exit_code == 0 and "MISMATCH" not in audited.output, audited.output  # replays with the groups
    assert "0 mismatch(es)" in audited.output, audited.output
    assert "subgroups by column hospital (named by the audit bundle)" in audited.output, audited.output
    owned = OwnedBounty.load(MineHome(owner_home), bounty_id)
    by_version = dict(owned.group_scores())  # recorded per version: 0 at posting, 1 by the round
    assert sorted(by_version) == [0, 1]
    assert all(sorted(scores) == [f"hospital={h}" for h in range(3)] for scores in by_version.values())
    assert owned.rounds[-1]["version"] == 1 and owned.rounds[-1]["per_group"] == by_version[1]
    assert sonar.submission(bounty_id, 0).status == SubmissionStatus.ACCEPTED
    assert sonar.bounty(bounty_id).latest_version == 1


def test_template_for_an_image_table_is_a_cnn(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 36)).astype(np.float32)
    y = rng.integers(0, 4, 50)
    manifest = M.template_manifest("tiles", X, y, [f"px{i}" for i in range(36)], "kind", image=(1, 6, 6), hidden=(8,))
    assert [layer["type"] for layer in manifest.layers][:2] == ["Unflatten", "Conv2d"]
    assert manifest.num_classes == 4 and manifest.cost.output_shape == (4,)
    regression = M.template_manifest("r", X, rng.normal(size=50), [f"px{i}" for i in range(36)], "v", hidden=())
    assert regression.task == "regression" and [layer["type"] for layer in regression.layers] == ["Linear"]
    with pytest.raises(Exception, match="C\\*H\\*W"):
        M.template_manifest("tiles", X, y, [f"px{i}" for i in range(36)], "kind", image=(1, 5, 5))


# --------------------------------------------------------------------------- subgroups


def _grouped_vault(tmp_path: Path, rows: list[tuple[float, int, float]]) -> Vault:
    home = MineHome(tmp_path / "home")
    home.init(Config())
    path = tmp_path / "val.csv"
    path.write_text("a,hospital,y\n" + "".join(f"{a:.6f},{g},{y:.6f}\n" for a, g, y in rows))
    vault = Vault(home)
    vault.add("val", path, target="y", group="hospital")
    return vault


def test_group_column_is_not_a_feature_and_labels_name_the_column(tmp_path: Path) -> None:
    vault = _grouped_vault(tmp_path, [(0.5, 1, 1.0), (-0.5, 2, 0.0)])
    assert vault.get("val").features == ["a"]
    X, _y, columns = vault.load("val")
    assert columns == ["a"] and X.shape == (2, 1)
    data = load_validation(vault, "val", ["a"])
    assert list(data.groups) == ["hospital=1", "hospital=2"]
    with pytest.raises(VaultError, match="group column"):
        load_validation(vault, "val", ["a", "hospital"])


def _regression_case(tmp_path: Path) -> tuple[M.Manifest, dict[str, torch.Tensor], dict[str, torch.Tensor], tuple]:
    """95 % of rows from hospital 0 (y = a), 5 % from hospital 1 (y = a + 2); the model predicts a + 0.4."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=400)
    g = (np.arange(400) % 20 == 0).astype(int)
    y = a + 2.0 * g
    vault = _grouped_vault(tmp_path, list(zip(a.tolist(), g.tolist(), y.tolist())))
    manifest = M.Manifest(name="lin", task="regression", features=["a"], target="y", loss="mse", metric="mse",
                          layers=[{"type": "Linear", "in_features": 1, "out_features": 1}])
    state = {"0.weight": torch.tensor([[1.0]]), "0.bias": torch.tensor([0.4])}
    delta = {"0.weight": torch.zeros(1, 1), "0.bias": torch.tensor([-0.4])}  # fits hospital 0, hurts hospital 1
    data = load_validation(vault, "val", manifest.features)
    return manifest, state, delta, (data.X, data.y, data.groups)


def test_update_that_hurts_one_group_is_rejected_with_its_name(tmp_path: Path) -> None:
    manifest, state, delta, validation = _regression_case(tmp_path)
    policy = DefaultPolicy(server_lr=1.0, subgroup_tolerance=0.1)
    decision = policy.decide(manifest, state, M.state_to_bytes(delta), validation)
    assert decision.score_after < decision.score_before  # the overall MSE improves ...
    assert not decision.accepted and decision.reason_code == SUBGROUP_REGRESSION  # ... but not for everyone
    assert "hospital=1" in decision.reason
    assert decision.per_group_after["hospital=0"] < decision.per_group_before["hospital=0"]


def test_without_the_group_column_the_same_update_is_accepted(tmp_path: Path) -> None:
    manifest, state, delta, (X, y, _groups) = _regression_case(tmp_path)
    decision = DefaultPolicy(server_lr=1.0, subgroup_tolerance=0.1).decide(manifest, state, M.state_to_bytes(delta), (X, y))
    assert decision.accepted, decision.reason


def test_update_within_the_tolerance_passes(tmp_path: Path) -> None:
    manifest, state, delta, validation = _regression_case(tmp_path)
    decision = DefaultPolicy(server_lr=1.0, subgroup_tolerance=0.6).decide(manifest, state, M.state_to_bytes(delta),
                                                                           validation)
    assert decision.accepted, decision.reason


def test_model_import_cli_writes_manifest_and_weights_and_refuses_batchnorm(tmp_path: Path) -> None:
    home = tmp_path / "home"
    runner = CliRunner()
    csv = tmp_path / "t.csv"
    _table(csv, 60, seed=3)
    source = tmp_path / "my_models.py"
    source.write_text("import torch\n"
                      "net = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.GELU(), torch.nn.Linear(8, 2))\n"
                      "bad = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 2))\n")
    weights = tmp_path / "w.pt"
    torch.manual_seed(5)
    reference = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.GELU(), torch.nn.Linear(8, 2))
    torch.save(reference.state_dict(), weights)
    for args in (["init", "--offline"], ["vault", "add", "t", str(csv), "--target", "outcome", "--group", "hospital"]):
        assert runner.invoke(cli, ["--home", str(home), *args]).exit_code == 0
    ok = runner.invoke(cli, ["--home", str(home), "model", "import", f"{source}:net", "--dataset", "t",
                             "--weights", str(weights), "--no-normalize", "--out", str(tmp_path / "out")])
    assert ok.exit_code == 0, ok.output
    manifest = M.Manifest.from_json((tmp_path / "out" / "manifest.json").read_bytes())
    model = M.model_from_bytes(manifest, (tmp_path / "out" / "weights.safetensors").read_bytes())
    x = torch.randn(3, 5)
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))
    assert manifest.features == COLUMNS and json.loads(manifest.to_json())["layers"][1]["type"] == "GELU"
    bad = runner.invoke(cli, ["--home", str(home), "model", "import", f"{source}:bad", "--dataset", "t",
                              "--out", str(tmp_path / "bad")])
    assert bad.exit_code != 0 and "BatchNorm1d" in bad.output and not (tmp_path / "bad").exists()
