"""`mine ui` in a real headless browser (Debian chromium + Playwright) against a real anvil and store.

A miner earns on a bounty (one update accepted, one rejected); its page, served by the real `mine ui`
command in its own process, shows the bounty row, the rejection reason and the earnings, and a click
on withdraw moves the balance. The owner's page shows the model lineage, and per-group scores per
version when its validation set has a group column. Screenshots go to demo-out/.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

from mine import attacks, datasets
from mine.chain import PROJECT_ROOT, SonarClient, connect
from mine.cli import cli
from mine.devnet import dev_account, free_port
from mine.model import default_manifest, with_normalization

OWNER, MINER = 0, 5
OWNER_GROUPS, MINER_GROUPS = 2, 6  # a second owner with a group column, its miner
SHOTS = PROJECT_ROOT / "demo-out"

playwright = pytest.importorskip("playwright.sync_api")


class Mines:
    def __init__(self, rpc: str, sonar: SonarClient, tmp: Path) -> None:
        self.rpc, self.sonar, self.tmp = rpc, sonar, tmp
        self.store = f"embedded:{tmp / 'blocks'}"
        self.owner_home, self.miner_home = tmp / "owner", tmp / "miner"

    def base(self, home: Path, dev: int) -> list[str]:
        return ["--home", str(home), "--rpc", self.rpc, "--sonar", self.sonar.address, "--store", self.store,
                "--dev-account", str(dev)]

    def run(self, home: Path, dev: int, *args: str) -> Result:
        result = CliRunner().invoke(cli, [*self.base(home, dev), *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result

    @contextlib.contextmanager
    def ui(self, home: Path, dev: int) -> Iterator[str]:
        """`mine ui` for `home` running on a free port; yields its URL, stops it on exit."""
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "mine.cli", *self.base(home, dev), "ui", "--port", str(port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        try:
            while True:
                try:
                    urllib.request.urlopen(url + "/api/state", timeout=2).read()
                    break
                except OSError:
                    assert proc.poll() is None, f"mine ui exited with {proc.returncode}"
                    assert time.monotonic() < deadline, "mine ui did not answer"
                    time.sleep(0.3)
            yield url
        finally:
            proc.terminate()
            proc.wait(10)


@pytest.fixture(scope="module")
def mines(rpc_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mines]:
    tmp = tmp_path_factory.mktemp("ui")
    m = Mines(rpc_url, SonarClient.deploy(connect(rpc_url), dev_account(OWNER)), tmp)
    data = datasets.load("digits")
    split = datasets.train_validation_split(data.X, data.y, validation_fraction=0.25, seed=0, task=data.task)
    shard = datasets.dirichlet_shards(split.y_train, 4, alpha=100.0, seed=0, task=data.task)[0]
    val, honest, flipped, model = (tmp / "validation.csv", tmp / "shard.csv", tmp / "flipped.csv", tmp / "digits.json")
    datasets.write_csv(val, split.X_val, split.y_val, data.feature_names, data.target_name)
    datasets.write_csv(honest, split.X_train[shard], split.y_train[shard], data.feature_names, data.target_name)
    datasets.write_csv(flipped, split.X_train[shard], attacks.label_flip(split.y_train[shard], num_classes=10, seed=0),
                       data.feature_names, data.target_name)
    model.write_bytes(with_normalization(default_manifest("digits"), split.X_val).to_json())
    for home, dev in ((m.owner_home, OWNER), (m.miner_home, MINER)):
        m.run(home, dev, "init", "--rpc", rpc_url, "--sonar", m.sonar.address)
    m.run(m.owner_home, OWNER, "vault", "add", "validation", str(val), "--target", "digit")
    m.run(m.miner_home, MINER, "vault", "add", "private", str(honest), "--target", "digit")
    m.run(m.miner_home, MINER, "vault", "add", "flipped", str(flipped), "--target", "digit")
    posted = m.run(m.owner_home, OWNER, "bounty", "create", "--model", str(model), "--validation", "validation",
                   "--reward", "1ether", "--target", "0.99", "--deadline", "2h", "--eval-window", "30m",
                   "--stake", "0.01ether", "--setting", "subgroup_tolerance=0.2")
    m.bounty = int(re.search(r"bounty (\d+) posted", posted.output).group(1))  # type: ignore[union-attr,attr-defined]
    for dataset, seed in (("private", "1"), ("flipped", "5")):
        m.run(m.miner_home, MINER, "train", str(m.bounty), "--dataset", dataset, "--epochs", "3", "--seed", seed)  # type: ignore[attr-defined]
        m.run(m.miner_home, MINER, "submit", str(m.bounty))  # type: ignore[attr-defined]
        m.run(m.owner_home, OWNER, "evaluate", str(m.bounty))  # type: ignore[attr-defined]
    yield m


def test_miner_page_shows_bounty_rejection_and_earnings_and_withdraws(mines: Mines) -> None:
    from playwright.sync_api import sync_playwright

    from mine.amounts import format_amount
    from mine.ui.shot import chromium_path

    me = dev_account(MINER).address
    # a second bounty, still open, so the page lists one
    with mines.ui(mines.miner_home, MINER) as url:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url + "/")
            row = page.locator("#bounties tbody tr").filter(has_text="digits-mlp").first
            assert row.inner_text().split()[0] == str(mines.bounty)  # type: ignore[attr-defined]
            assert "private" in row.inner_text()  # the dataset that fits
            rejected = page.locator("#submissions tr.state-rejected").first.inner_text()
            assert re.search(r"rejected: \[\d\] .+; stake 0\.01 ETH (returned|forfeited)", rejected), rejected
            accepted = page.locator("#submissions tr.state-accepted").first.inner_text()
            assert "% of the round's pot: paid" in accepted and "score" in accepted
            earned = page.locator("#earned").inner_text()
            assert re.fullmatch(r"0\.\d+ ETH", earned) and earned != "0 ETH", earned
            assert page.locator("svg.chart").count() >= 1
            credits = mines.sonar.credits(me)
            assert credits > 0 and page.locator("#withdrawable").inner_text() != "0 ETH"
            # the accepted update's reward and stake vest until the bounty (open 2 h) ends: shown apart
            vest = mines.sonar.vesting(mines.bounty, me)  # type: ignore[attr-defined]
            assert vest.rewards > 0 and vest.stakes == 10**16
            assert page.locator("#vesting").inner_text() == format_amount(vest.total, 18, "ETH")
            page.click("#withdraw")
            page.wait_for_selector("#message")
            assert page.locator("#message").inner_text().startswith("withdrew 0.")
            assert page.locator("#withdrawable").inner_text() == "0 ETH"
            assert page.locator("#withdrawn").inner_text() == page.locator("#message").inner_text().removeprefix("withdrew ")
            assert mines.sonar.credits(me) == 0
            assert mines.sonar.vesting(mines.bounty, me) == vest  # type: ignore[attr-defined]
            SHOTS.mkdir(exist_ok=True)
            page.screenshot(path=str(SHOTS / "ui-miner.png"), full_page=True)
            with mines.ui(mines.owner_home, OWNER) as owner_url:
                page.goto(owner_url + "/")
                owned = page.locator("section.owned").first.inner_text()
                assert f"My bounty {mines.bounty}" in owned and "validation score per model version" in owned  # type: ignore[attr-defined]
                page.screenshot(path=str(SHOTS / "ui-owner.png"), full_page=True)
            browser.close()
    assert (SHOTS / "ui-miner.png").stat().st_size > 10_000


def test_withdraw_without_the_session_token_is_refused(mines: Mines) -> None:
    with mines.ui(mines.miner_home, MINER) as url:
        for body, cookie in ((b"", ""), (b"csrf=forged", "mine_session=abc")):
            request = urllib.request.Request(url + "/withdraw", data=body, method="POST", headers={"Cookie": cookie})
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(request, timeout=10)
            assert err.value.code == 403


def test_page_listens_on_loopback_only(mines: Mines) -> None:
    with mines.ui(mines.miner_home, MINER) as url:
        port = int(url.rsplit(":", 1)[1])
        listening = []  # /proc/net/tcp{,6}: local address as hex ip:port, state 0A = LISTEN
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            for line in Path(table).read_text().splitlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                    listening.append(local.rsplit(":", 1)[0])
        assert listening == ["0100007F"], listening  # 127.0.0.1 only


def test_page_refreshes_itself_while_mine_watch_runs(mines: Mines) -> None:
    from mine.home import MineHome
    from mine.watch import home_lock

    with mines.ui(mines.miner_home, MINER) as url:
        idle = urllib.request.urlopen(url + "/", timeout=30).read().decode()
        assert "mine watch not running" in idle and "/api/state" not in idle
        with home_lock(MineHome(mines.miner_home)):  # what a running `mine watch` holds
            live = urllib.request.urlopen(url + "/", timeout=30).read().decode()
            state = urllib.request.urlopen(url + "/api/state", timeout=30).read().decode()
        assert f"mine watch running (pid {os.getpid()})" in live and 'fetch("/api/state")' in live
        assert f'"watch_pid":{os.getpid()}' in state.replace(" ", "")


def test_owner_page_shows_per_group_scores_per_version(mines: Mines) -> None:
    from playwright.sync_api import sync_playwright

    from mine.ui.shot import chromium_path

    # Prepare: an owner whose validation set has a `hospital` group column, a miner whose update is accepted
    owner_home, miner_home = mines.tmp / "owner-groups", mines.tmp / "miner-groups"
    data = datasets.load("digits")
    split = datasets.train_validation_split(data.X, data.y, validation_fraction=0.25, seed=0, task=data.task)
    hospital = (np.arange(len(split.y_val)) % 3)[:, None].astype(split.X_val.dtype)  # not a feature
    val = mines.tmp / "validation-groups.csv"
    datasets.write_csv(val, np.hstack([split.X_val, hospital]), split.y_val, [*data.feature_names, "hospital"],
                       data.target_name)
    for home, dev in ((owner_home, OWNER_GROUPS), (miner_home, MINER_GROUPS)):
        mines.run(home, dev, "init", "--rpc", mines.rpc, "--sonar", mines.sonar.address)
    mines.run(owner_home, OWNER_GROUPS, "vault", "add", "validation", str(val), "--target", "digit",
              "--group", "hospital")
    mines.run(miner_home, MINER_GROUPS, "vault", "add", "private", str(mines.tmp / "shard.csv"), "--target", "digit")
    posted = mines.run(owner_home, OWNER_GROUPS, "bounty", "create", "--model", str(mines.tmp / "digits.json"),
                       "--validation", "validation", "--reward", "1ether", "--target", "0.99", "--stake", "0.01ether",
                       "--setting", "subgroup_tolerance=0.2")
    bounty = re.search(r"bounty (\d+) posted", posted.output).group(1)  # type: ignore[union-attr]
    mines.run(miner_home, MINER_GROUPS, "train", bounty, "--dataset", "private", "--epochs", "3", "--seed", "1")
    mines.run(miner_home, MINER_GROUPS, "submit", bounty)
    assert "accepted 1 of 1" in mines.run(owner_home, OWNER_GROUPS, "evaluate", bounty).output

    # Execute: the owner's page in a browser
    with mines.ui(owner_home, OWNER_GROUPS) as url:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url + "/")
            table = page.locator("section.owned table.group-scores").first
            header = table.locator("thead").inner_text()
            rows = [r.inner_text().split() for r in table.locator("tbody tr").all()]
            browser.close()

    # Assert: one column per hospital, one row per model version (0 at posting, 1 from the round)
    assert all(f"hospital={h}" in header for h in range(3)), header
    assert [r[0] for r in rows] == ["0", "1"], rows
    assert all(re.fullmatch(r"\d\.\d{4}", s) for r in rows for s in r[1:]), rows
