"""A real browser talks to simplews: headless Chromium opens the demo page of the
echo example, sends a message from the page, and sees the echo come back; then
two tabs chat through ``python -m simplews.demo``.

Chromium is Debian's (``/usr/bin/chromium``, or ``$CHROMIUM``), driven by
playwright-core from tests/browser/node_modules (installed by ``.ci/run``, or
here on first use, never with a browser download). Skipped only when Chromium
or Node.js is missing.
"""

import json
import os
import shutil
import subprocess
import tempfile
from typing import Any

import pytest

from test_examples import EXAMPLES, ExampleProcess

BROWSER_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "browser")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
NODE = shutil.which("node")
TIMEOUT = 180  # seconds for the whole browser run: a hang guard only
MESSAGE = "hello from chromium \u2713"

pytestmark = [
    pytest.mark.skipif(not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)),
                       reason="Chromium not found at %s (Debian package: chromium)" % CHROMIUM),
    pytest.mark.skipif(NODE is None, reason="Node.js (node) not found on PATH"),
]


def _browser_env() -> dict:
    env = dict(os.environ)
    env["PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD"] = "1"  # never fetch a browser: use Debian's
    env["CHROMIUM"] = CHROMIUM
    return env


def _ensure_playwright() -> None:
    """Install playwright-core into tests/browser/node_modules unless it is there (one installer at a time)."""
    marker = os.path.join(BROWSER_DIR, "node_modules", "playwright-core", "package.json")
    if os.path.exists(marker):
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("playwright-core is not installed and npm is missing: run `npm install` in %s" % BROWSER_DIR)
    import fcntl
    with open(os.path.join(tempfile.gettempdir(), "simplews-npm-install.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(marker):
            return
        result = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--no-package-lock"],
                                cwd=BROWSER_DIR, env=_browser_env(), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
        if result.returncode != 0 or not os.path.exists(marker):
            pytest.fail("npm install in %s failed:\n%s" % (BROWSER_DIR, result.stdout.decode("utf-8", "replace")))


def _run_browser(tmp_path: Any, server: ExampleProcess, chat: bool = False) -> dict:
    """Run demo_check.js against ``server``, stop the server, and return the browser's report."""
    screenshot = str(tmp_path / "simplews-demo.png")
    profile = str(tmp_path / "chromium-profile")  # a fresh, empty user data dir
    os.mkdir(profile)
    env = _browser_env()
    env["DEMO_CHAT"] = "1" if chat else "0"
    try:
        url = "http://127.0.0.1:%d/" % server.port
        result = subprocess.run([NODE, os.path.join(BROWSER_DIR, "demo_check.js"), url, screenshot, profile, MESSAGE],
                                cwd=BROWSER_DIR, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=TIMEOUT)
    finally:
        code = server.stop()
    stdout = result.stdout.decode("utf-8", "replace")
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 0, "browser run failed:\n%s\n%s\nserver log:\n%s" % (stdout, stderr, server.errors)
    report = json.loads(stdout.strip().splitlines()[-1])
    with open(screenshot, "rb") as image:
        assert image.read(8) == b"\x89PNG\r\n\x1a\n"
    assert code == 0, "the server did not stop cleanly:\n%s" % server.errors
    assert "Traceback" not in server.errors, server.errors
    return report


def test_demo_page_echoes_in_chromium(tmp_path: Any) -> None:
    _ensure_playwright()
    report = _run_browser(tmp_path, ExampleProcess(os.path.join(EXAMPLES, "echo_server.py")))
    assert report["title"] == "simplews demo"
    assert report["statusOpen"] == "connected"
    assert report["echo"].endswith(MESSAGE)  # the echo, as the page shows it
    assert report["counts"] == "sent 1 \u00b7 received 1"
    assert report["consoleErrors"] == []


def test_demo_chat_between_two_tabs(tmp_path: Any) -> None:
    _ensure_playwright()
    report = _run_browser(tmp_path, ExampleProcess("-m", "simplews.demo"), chat=True)
    assert report["echo"].endswith(MESSAGE)
    assert report["relayed"].endswith(": " + MESSAGE + " (again)")  # "guest-N: ..." in the other tab
    assert report["consoleErrors"] == []
