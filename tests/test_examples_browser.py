"""The examples' pages in a real browser: headless Chromium draws the sensor
dashboard's live chart (and sees it reconnect when the server restarts), echoes
through the static_and_ws page, and chats between two tabs of chat_server.py.

Same machinery as tests/test_browser.py: Debian's Chromium (``/usr/bin/chromium``
or ``$CHROMIUM``), playwright-core from tests/browser/node_modules, never a
browser download; the driver is tests/browser/examples_check.js. Skipped only
when Chromium or Node.js is missing.
"""

import json
import os
import signal
import subprocess
from typing import Any, Dict, List

import pytest

from test_browser import BROWSER_DIR, CHROMIUM, MESSAGE, NODE, _browser_env, _ensure_playwright, _run_browser
from test_examples import EXAMPLES, TIMEOUT, ExampleProcess, LineReader

DRIVER = os.path.join(BROWSER_DIR, "examples_check.js")
BROWSER_TIMEOUT = 240  # seconds for one browser run: a hang guard only

pytestmark = [
    pytest.mark.skipif(not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)),
                       reason="Chromium not found at %s (Debian package: chromium)" % CHROMIUM),
    pytest.mark.skipif(NODE is None, reason="Node.js (node) not found on PATH"),
]


class Driver(object):
    """examples_check.js running in the background; its JSON lines are read as they come."""

    def __init__(self, tmp_path: Any, mode: str, url: str, *extra: str) -> None:
        _ensure_playwright()
        self.screenshot = str(tmp_path / ("%s.png" % mode))
        profile = str(tmp_path / "chromium-profile")  # a fresh, empty user data dir
        os.mkdir(profile)
        assert NODE is not None
        self.proc = subprocess.Popen([NODE, DRIVER, mode, url, self.screenshot, profile] + list(extra),
                                     cwd=BROWSER_DIR, env=_browser_env(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.stdout = LineReader(self.proc.stdout, "browser-stdout")
        self.stderr = LineReader(self.proc.stderr, "browser-stderr")

    def step(self, name: str) -> Dict[str, Any]:
        """The JSON line of step ``name`` (waits for it; fails on the driver's error line)."""
        _, match = self.stdout.wait_for(r'^\{"step":"(%s|error)"' % name, timeout=BROWSER_TIMEOUT)
        line = match.string
        report = json.loads(line)
        assert report["step"] == name, "browser run failed:\n%s\n%s" % (line, self.stderr.text())
        return report

    def finish(self) -> Dict[str, Any]:
        report = self.step("done")
        try:
            code = self.proc.wait(BROWSER_TIMEOUT)
        finally:
            self.close()
        assert code == 0, self.stderr.text()
        with open(self.screenshot, "rb") as image:
            assert image.read(8) == b"\x89PNG\r\n\x1a\n"
        return report

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(TIMEOUT)
        self.stdout.close()
        self.stderr.close()


def page_errors(report: Dict[str, Any]) -> List[str]:
    """Console errors other than Chromium's notice of a refused WebSocket (expected while the server is down)."""
    return [error for error in report["consoleErrors"] if not error.startswith("WebSocket connection to")]


def test_sensor_dashboard_draws_live_readings_and_reconnects(tmp_path: Any) -> None:
    dashboard = os.path.join(EXAMPLES, "sensor_dashboard.py")
    server = ExampleProcess(dashboard, "--interval", "0.2")
    restarted = None
    driver = Driver(tmp_path, "dashboard", "http://127.0.0.1:%d/" % server.port)
    try:
        live = driver.step("live")
        assert live["before"]["points"] >= 3 and live["before"]["painted"] > 0  # the chart is drawn
        server.assert_stops_cleanly()  # the server goes away...
        restarted = ExampleProcess(dashboard, "--interval", "0.2", port=server.port)  # ...and comes back
        report = driver.finish()
    finally:
        driver.close()
        for process in (server, restarted):
            if process is not None and not process.stderr.closed:
                process.stop(signal.SIGKILL)
    assert report["title"] == "simplews sensor dashboard"
    assert report["statusOpen"] == "connected"
    assert "closed" in report["statusSeen"] and report["statusSeen"][-1] == "open"
    assert report["after"]["points"] >= 3 and report["after"]["painted"] > 0
    assert report["current"].endswith("\u00b0C")
    assert page_errors(report) == []


def test_static_page_echoes_in_chromium(tmp_path: Any) -> None:
    server = ExampleProcess(os.path.join(EXAMPLES, "static_and_ws.py"))
    driver = Driver(tmp_path, "static", "http://127.0.0.1:%d/" % server.port, MESSAGE)
    try:
        report = driver.finish()
    finally:
        driver.close()
        server.stop()
    assert "Traceback" not in server.errors
    assert report["title"] == "simplews static page"
    assert report["statusOpen"] == "connected to ws://127.0.0.1:%d/ws" % server.port
    assert report["echo"] == "echo: " + MESSAGE
    assert report["consoleErrors"] == []


def test_chat_example_between_two_tabs(tmp_path: Any) -> None:
    _ensure_playwright()
    report = _run_browser(tmp_path, ExampleProcess(os.path.join(EXAMPLES, "chat_server.py")), chat=True)
    assert report["echo"].endswith("guest-1: " + MESSAGE)  # the broadcast reaches the sender too
    assert report["relayed"].endswith("guest-1: " + MESSAGE + " (again)")
    assert report["consoleErrors"] == []
