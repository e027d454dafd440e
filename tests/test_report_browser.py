"""The HTML report in a real browser: headless Chromium driven over the DevTools protocol.

No Playwright (it downloads its own browsers): the system's Chromium is started with
``--remote-debugging-port=0`` bound to 127.0.0.1, and aiohttp's websocket client (already a
dev dependency) speaks CDP to it. The test opens the report from ``file://`` and checks that
the page makes no request besides the file itself, logs no console error, throws no
exception and violates no Content-Security-Policy rule; then it saves a full-page
screenshot to ``reports/screenshots/`` (git-ignored) for a human to look at.

Skipped when no Chromium is on PATH, except in CI (``CI=true``), where ``.ci/run`` installs
Debian's ``chromium`` and a missing browser is a failure.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from rai_harness.report import render_report
from rai_harness.testing.synthetic_run import DEFAULT_PROVIDERS, SyntheticProvider, write_synthetic_run

aiohttp = pytest.importorskip("aiohttp")

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "reports" / "screenshots"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser() -> str | None:
    """The first Chromium-family browser on PATH."""
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def browser_path() -> str:
    path = find_browser()
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(
                "CI=true but no Chromium on PATH (looked for " + ", ".join(BROWSERS) + "); "
                ".ci/run must `apt-get install -y chromium` before the tests"
            )
        pytest.skip(
            "no Chromium on PATH (" + ", ".join(BROWSERS) + "); install Debian's `chromium` to run it"
        )
    return path


class Cdp:
    """A minimal flat-session CDP client: commands with ids, events collected in order."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: list[dict[str, Any]] = []
        self.waiters: list[tuple[str, asyncio.Future[dict[str, Any]]]] = []
        self.reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            if "id" in data:
                fut = self.pending.pop(data["id"], None)
                if fut is not None and not fut.done():
                    fut.set_result(data)
                continue
            self.events.append(data)
            for method, fut in list(self.waiters):
                if data.get("method") == method and not fut.done():
                    fut.set_result(data)
                    self.waiters.remove((method, fut))

    async def send(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> dict[str, Any]:
        msg_id = next(self.ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[msg_id] = fut
        payload: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if session:
            payload["sessionId"] = session
        await self.ws.send_str(json.dumps(payload))
        reply = await asyncio.wait_for(fut, 30)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return dict(reply.get("result", {}))

    def wait_for(self, method: str) -> asyncio.Future[dict[str, Any]]:
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.waiters.append((method, fut))
        return fut

    async def close(self) -> None:
        self.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.reader


@contextlib.asynccontextmanager
async def chromium(path: str, profile: Path) -> AsyncIterator[Cdp]:
    """Start headless Chromium on a random local port and yield a CDP client on its browser target."""
    args = [
        path,
        "--headless=new",
        "--remote-debugging-port=0",
        "--remote-debugging-address=127.0.0.1",
        f"--user-data-dir={profile}",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-gpu",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--mute-audio",
        "about:blank",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox (containers)
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            if proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {proc.returncode} before opening DevTools")
            if time.monotonic() > deadline:
                raise RuntimeError("chromium did not open DevTools within 30 s")
            await asyncio.sleep(0.05)
        port, ws_path = port_file.read_text().splitlines()[:2]
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(f"ws://127.0.0.1:{port}{ws_path}", max_msg_size=0) as ws,
        ):
            cdp = Cdp(ws)
            try:
                yield cdp
            finally:
                with contextlib.suppress(Exception):
                    await cdp.send("Browser.close")
                await cdp.close()
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def open_report(cdp: Cdp, url: str, width: int = 1280) -> str:
    """Open ``url`` in a new tab with every event domain enabled; return the session id."""
    target = await cdp.send("Target.createTarget", {"url": "about:blank"})
    session = (await cdp.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}))[
        "sessionId"
    ]
    for domain in ("Page", "Runtime", "Log", "Network"):
        await cdp.send(f"{domain}.enable", session=session)
    await cdp.send(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False},
        session=session,
    )
    loaded = cdp.wait_for("Page.loadEventFired")
    await cdp.send("Page.navigate", {"url": url}, session=session)
    await asyncio.wait_for(loaded, 30)
    await asyncio.sleep(0.3)  # late console messages and CSP reports arrive after load
    return session


async def evaluate(cdp: Cdp, session: str, expression: str) -> Any:
    result = await cdp.send(
        "Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=session
    )
    return result["result"].get("value")


async def screenshot(cdp: Cdp, session: str, path: Path, clip: dict[str, float] | None = None) -> None:
    """A PNG of the whole page (beyond the viewport), or of ``clip``."""
    if clip is None:
        metrics = await cdp.send("Page.getLayoutMetrics", session=session)
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"]}
    shot = await cdp.send(
        "Page.captureScreenshot",
        {"format": "png", "captureBeyondViewport": True, "clip": {**clip, "scale": 1}},
        session=session,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))


def problems_in(events: list[dict[str, Any]], page_url: str) -> dict[str, list[str]]:
    """Requests other than the page, console errors and warnings, log errors, exceptions."""
    requests = [
        e["params"]["request"]["url"]
        for e in events
        if e.get("method") == "Network.requestWillBeSent" and e["params"]["request"]["url"] != page_url
    ]
    console = [
        f"{e['params']['type']}: {[a.get('value', a.get('description')) for a in e['params'].get('args', [])]}"
        for e in events
        if e.get("method") == "Runtime.consoleAPICalled"
        and e["params"]["type"] in ("error", "warning", "assert")
    ]
    log = [
        f"{e['params']['entry']['source']}: {e['params']['entry']['text']}"
        for e in events
        if e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] in ("error", "warning")
    ]
    exceptions = [
        str(e["params"]["exceptionDetails"].get("text"))
        for e in events
        if e.get("method") == "Runtime.exceptionThrown"
    ]
    return {"requests": requests, "console": console, "log": log, "exceptions": exceptions}


@pytest.fixture(scope="module")
def report_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("browser-run")
    providers = (
        *DEFAULT_PROVIDERS,
        SyntheticProvider("llama-local", model="llama-3.1-8b", pricing="none", stream=False),
    )
    write_synthetic_run(run, n_samples=360, providers=providers, seed=7, status="incomplete")
    return render_report(run, redact=True, redactor="regex")


async def test_report_in_chromium(browser_path: str, report_file: Path, tmp_path: Path) -> None:
    url = report_file.resolve().as_uri()
    async with chromium(browser_path, tmp_path / "profile") as cdp:
        session = await open_report(cdp, url)
        dom = json.loads(
            await evaluate(
                cdp,
                session,
                "JSON.stringify({scripts: document.scripts.length,"
                " svgs: document.querySelectorAll('svg.chart').length,"
                " hrefs: [...document.querySelectorAll('[href]')].map(a => a.getAttribute('href')),"
                " status: document.getElementById('run-status').textContent.trim(),"
                " hostile: document.body.textContent.includes('<script>alert(1)</script>')})",
            )
        )
        await screenshot(cdp, session, SCREENSHOTS / "report.png")
        found = problems_in(cdp.events, url)

        # A phone-sized window: nothing but the tables' own scroll areas may overflow.
        narrow = await open_report(cdp, url, width=420)
        overflow = await evaluate(cdp, narrow, "document.documentElement.scrollWidth")
        await screenshot(
            cdp,
            narrow,
            SCREENSHOTS / "report-narrow.png",
            clip={"x": 0, "y": 0, "width": 420, "height": 1800},
        )
        found_narrow = problems_in(cdp.events, url)

        # Print: evidence headings (<summary>) stay visible and the closed <details> print their
        # examples; the executive summary and every interval's n are there on paper too.
        printed = await open_report(cdp, url)
        await cdp.send("Emulation.setEmulatedMedia", {"media": "print"}, session=printed)
        paper = json.loads(
            await evaluate(
                cdp,
                printed,
                "JSON.stringify({"
                " hidden_summaries: [...document.querySelectorAll('#evidence details > summary')]"
                "   .filter(e => getComputedStyle(e).display === 'none' || !e.offsetHeight).length,"
                " summaries: document.querySelectorAll('#evidence details > summary').length,"
                " unprinted_examples: [...document.querySelectorAll('#evidence .ex')]"
                "   .filter(e => !e.offsetHeight).length,"
                " examples: document.querySelectorAll('#evidence .ex').length,"
                " summary_break: getComputedStyle(document.querySelector('#evidence summary')).breakAfter,"
                " exec: document.getElementById('summary').offsetHeight,"
                " cell_n: [...document.querySelectorAll('#scorecard .cell-n')].filter(e => e.offsetHeight).length,"
                " cell_ci: document.querySelectorAll('#scorecard .cell-ci').length})",
            )
        )

    assert found == {"requests": [], "console": [], "log": [], "exceptions": []}, found
    assert found_narrow == found
    assert dom["scripts"] == 0
    assert dom["svgs"] >= 20
    assert all(h.startswith("#") for h in dom["hrefs"]), dom["hrefs"]
    assert "Incomplete" in dom["status"]
    assert dom["hostile"], "hostile output should be visible as text"
    assert overflow <= 420
    assert paper["summaries"] > 0 and paper["hidden_summaries"] == 0, paper
    assert paper["examples"] > 0 and paper["unprinted_examples"] == 0, paper
    assert paper["summary_break"] == "avoid", paper
    assert paper["exec"] > 0 and paper["cell_n"] == paper["cell_ci"] > 0, paper
    assert (SCREENSHOTS / "report.png").stat().st_size > 50_000
