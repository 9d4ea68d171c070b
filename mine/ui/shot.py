"""Screenshots of the page in a real headless browser (Debian `chromium` driven by Playwright).

`make demo` calls `demo_screenshot` at the end of the demo to write demo-out/ui.png; tests use
`chromium_path` and `serve_in_background` to look at the page the way a person does.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mine.errors import ConfigError

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")


def chromium_path() -> str:
    """The system chromium binary, or a ConfigError saying how to install it."""
    for path in CHROMIUM_CANDIDATES:
        if Path(path).exists():
            return path
    found = shutil.which("chromium")
    if found:
        return found
    raise ConfigError("no chromium found: install Debian's `chromium` (`sudo apt-get install -y chromium`, "
                      "or `make setup` as root)")


@contextmanager
def serve_in_background(app: Any, *, host: str = "127.0.0.1", port: int | None = None) -> Iterator[str]:
    """Run a Starlette app with uvicorn in a thread for the block; yields its base URL."""
    import uvicorn

    if port is None:
        with socket.socket() as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise ConfigError(f"the page did not start on {host}:{port}")
        time.sleep(0.05)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def screenshot(url: str, out: Path, *, width: int = 1280) -> Path:
    """A full-page PNG of `url` taken by headless chromium."""
    from playwright.sync_api import sync_playwright

    out.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.goto(url, wait_until="load")
            page.screenshot(path=str(out), full_page=True)
        finally:
            browser.close()
    return out


def demo_screenshot(home: Any, client: Any, store: Any, out: Path) -> Path:
    """Serve one mine's page for a moment and screenshot it (the demo's demo-out/ui.png)."""
    from mine.ui import MineView, create_app

    with serve_in_background(create_app(MineView(home, client, store))) as url:
        return screenshot(url + "/", out)


def try_demo_screenshot(home: Any, client: Any, store: Any, out: Path) -> str:
    """`demo_screenshot`, or why not (no chromium, no Playwright): the demo completes either way."""
    try:
        from playwright.sync_api import Error as PlaywrightError
    except ImportError:
        return "no ui.png: Playwright is not installed (pip install -r requirements.txt)"
    try:
        return f"page screenshot: {demo_screenshot(home, client, store, out)}"
    except (ConfigError, OSError, PlaywrightError) as exc:
        return f"no ui.png: {exc}"
