"""Start and stop a throw-away IPFS node (js-ipfs from ``node_modules``) for tests, demos and benchmarks.

No Kubo binary is assumed. The npm package ``ipfs`` (js-ipfs 0.66) is run with Node directly,
so the process we hold *is* the node (no wrapper to leak). Its repo lives under ``workdir``;
the RPC API and gateway listen on free 127.0.0.1 ports, swarm listening, bootstrap, MDNS,
preload and the update notifier are all disabled, so nothing leaves the machine.

    with ipfs_daemon(tmp_path) as api:
        store = IpfsNodeStore(api)
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mine.devnet import free_port, listens
from mine.errors import StoreError

__all__ = ["find_jsipfs", "ipfs_daemon"]

_PROJECT_ROOT = Path(__file__).resolve().parents[2]
_CLI_RELATIVE = Path("node_modules") / "ipfs" / "src" / "cli.js"
_START_TIMEOUT = 60.0
_STOP_TIMEOUT = 10.0
_START_ATTEMPTS = 3


def find_jsipfs(project_root: Path | None = None) -> tuple[str, Path]:
    """Locate ``node`` and js-ipfs's ``cli.js``; raise StoreError saying how to install them."""
    node = shutil.which("node")
    if node is None:
        raise StoreError("Node.js (`node`) is not on PATH; install Node 20 and run `make setup`")
    cli = (project_root or _PROJECT_ROOT) / _CLI_RELATIVE
    if not cli.is_file():
        raise StoreError(f"js-ipfs is not installed ({cli} is missing); run `make setup` "
                         "or use the embedded store instead")
    return node, cli


def _node_env(repo: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"IPFS_PATH": str(repo), "NO_UPDATE_NOTIFIER": "1", "IPFS_MONITORING": ""})
    env.pop("DEBUG", None)
    return env


def _config(api_port: int, gateway_port: int) -> dict[str, object]:
    return {
        "Addresses": {
            "API": f"/ip4/127.0.0.1/tcp/{api_port}",
            "Gateway": f"/ip4/127.0.0.1/tcp/{gateway_port}",
            "RPC": "",
            "Swarm": [],
            "Announce": [],
            "Delegates": [],
        },
        "Bootstrap": [],
        "Discovery": {"MDNS": {"Enabled": False}, "webRTCStar": {"Enabled": False}},
    }


def _init_repo(node: str, cli: Path, repo: Path, config: dict[str, object]) -> None:
    config_file = repo.parent / f"{repo.name}.init.json"
    config_file.write_text(json.dumps(config))
    try:
        result = subprocess.run(
            [node, str(cli), "init", "--empty-repo", str(config_file)],
            env=_node_env(repo), capture_output=True, text=True, timeout=_START_TIMEOUT, check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise StoreError(f"`jsipfs init` did not finish in {_START_TIMEOUT:g}s") from exc
    if result.returncode != 0:
        raise StoreError(f"`jsipfs init` failed (exit {result.returncode}): {result.stderr.strip()[-500:]}")


def _api_answers(api_port: int) -> bool:
    request = urllib.request.Request(f"http://127.0.0.1:{api_port}/api/v0/version", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=1.0) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the node (and only its own process group), then SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        process.wait(timeout=_STOP_TIMEOUT)


def _tail(path: Path, limit: int = 800) -> str:
    try:
        return path.read_text(errors="replace").strip()[-limit:]
    except OSError:
        return ""


def _start(node: str, cli: Path, workdir: Path) -> tuple[subprocess.Popen[bytes], int, Path]:
    """One attempt: fresh repo, free ports, start, wait for the API. Returns (process, api port, log)."""
    repo = Path(tempfile.mkdtemp(prefix="jsipfs-", dir=workdir)) / "repo"
    api_port, gateway_port = free_port(), free_port()
    while gateway_port == api_port:
        gateway_port = free_port()
    _init_repo(node, cli, repo, _config(api_port, gateway_port))
    log_path = repo.parent / "daemon.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [node, str(cli), "daemon", "--offline", "--enable-preload=false"],
            env=_node_env(repo), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: stopping it never touches ours
        )
    try:
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise StoreError(f"js-ipfs exited with status {process.returncode} while starting: {_tail(log_path)}")
            if _api_answers(api_port):
                if listens(api_port, process.pid) is False:  # not ours: another node took the port picked as free
                    raise StoreError(f"127.0.0.1:{api_port} was taken by another process while js-ipfs started")
                return process, api_port, log_path
            time.sleep(0.2)
        raise StoreError(f"js-ipfs did not answer on 127.0.0.1:{api_port} within {_START_TIMEOUT:g}s: "
                         f"{_tail(log_path)}")
    except BaseException:
        _stop(process)
        raise


@contextmanager
def ipfs_daemon(workdir: Path) -> Iterator[str]:
    """Run a private, offline js-ipfs node with its repo under ``workdir``; yield its API multiaddr.

    The node is stopped when the block exits, also on errors and KeyboardInterrupt.
    Raises StoreError (with the node's log tail) if it cannot be started, or if ``node_modules``
    is missing ("run make setup").
    """
    node, cli = find_jsipfs()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    last_error: StoreError | None = None
    for _ in range(_START_ATTEMPTS):  # a free port can be taken between probing and binding
        try:
            process, api_port, _log = _start(node, cli, workdir)
        except StoreError as exc:
            last_error = exc
            continue
        try:
            yield f"/ip4/127.0.0.1/tcp/{api_port}"
        finally:
            _stop(process)
        return
    assert last_error is not None
    raise last_error
