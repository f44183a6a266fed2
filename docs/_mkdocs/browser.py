"""Open pages of the built site in headless Chromium and report what a reader would see broken.

    python docs/_mkdocs/browser.py site --out shots index.html api/solve/index.html

Serves the site over HTTP on localhost (the search worker does not run from ``file://``),
drives Debian's ``chromium`` through the DevTools protocol on a pipe (``--remote-debugging-pipe``:
no websocket client, no extra dependency), and for each page collects console errors, uncaught
exceptions, failed or >= 400 loads, images that did not decode and code blocks wider than the
window's column (cut, to be scrolled sideways), then takes a screenshot.
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import functools
import http.server
import json
import os
import select
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

WIDTH, HEIGHT = 1280, 900


class BrowserError(RuntimeError):
    """Chromium is missing, did not start, or stopped answering."""


@dataclass
class PageReport:
    """What one page showed: ``problems`` is empty for a page that loads cleanly."""

    path: str
    title: str = ""
    problems: list[str] = field(default_factory=list)
    images: int = 0
    screenshot: Path | None = None


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise BrowserError("no chromium on PATH: install Debian's package "
                       "(`apt-get install -y chromium`, as .ci/setup does)")


class _DevTools:
    """A DevTools-protocol client over Chromium's pipe: JSON messages ended by NUL bytes."""

    def __init__(self, chromium: str, profile: str, timeout: float = 30.0):
        self.timeout = timeout
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        # The protocol expects fds 3 (commands in) and 4 (replies out); move ours out of the way
        # first so the shell's redirections cannot clobber each other.
        r, w = (fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_chrome_r, from_chrome_w))
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        args = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--hide-scrollbars", "--mute-audio", f"--user-data-dir={profile}",
                f"--window-size={WIDTH},{HEIGHT}", "--remote-debugging-pipe", "about:blank"]
        self.proc = subprocess.Popen(["bash", "-c", f'exec 3<&{r} 4>&{w} {r}<&- {w}>&-; exec "$@"',
                                      "chromium", *args], pass_fds=(r, w),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        os.close(r)
        os.close(w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []

    def close(self) -> str:
        for fd in (self._to_chrome, self._from_chrome):
            try:
                os.close(fd)
            except OSError:
                pass
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return (err or b"").decode(errors="replace")

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_chrome], [], [], left)[0]:
                raise BrowserError("chromium did not answer in time")
            chunk = os.read(self._from_chrome, 1 << 20)
            if not chunk:
                raise BrowserError(f"chromium closed the pipe (exit code {self.proc.poll()})")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, session: str | None = None, **params) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float, session: str | None = None, **match) -> dict | None:
        """The first event ``method`` (already received or arriving within ``timeout``)."""

        def hit(event):
            return (event.get("method") == method and (session is None or event.get("sessionId") == session)
                    and all(event.get("params", {}).get(k) == v for k, v in match.items()))

        for event in self.events:
            if hit(event):
                return event
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                event = self._read(deadline)
            except BrowserError:
                if self.proc.poll() is not None:
                    raise
                return None
            self.events.append(event)
            if hit(event):
                return event
        return None


def _problems(events: list[dict], session: str) -> list[str]:
    found = []
    for event in events:
        if event.get("sessionId") != session:
            continue
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            found.append(f"console.{params['type']}: {text}")
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            found.append(f"uncaught exception: {details.get('exception', {}).get('description') or details.get('text')}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            found.append(f"console error ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}".rstrip())
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            found.append(f"failed load: {params.get('errorText')} ({params.get('type')})")
        elif method == "Network.responseReceived" and params.get("response", {}).get("status", 200) >= 400:
            response = params["response"]
            found.append(f"HTTP {response['status']}: {response.get('url')}")
    return found


_IMAGES = """JSON.stringify({
  title: document.title,
  images: document.images.length,
  broken: Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src),
  cut: Array.from(document.querySelectorAll("pre > code")).filter(c => c.scrollWidth > c.clientWidth + 1)
    .map(c => c.textContent.split("\\n").reduce((a, b) => (b.length > a.length ? b : a), "").slice(0, 60)),
})"""


def _serve(site: Path):
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def check_pages(site: Path, pages: list[str], out: Path | None = None, *, settle: float = 1.5,
                scroll_to: dict[str, str] | None = None) -> list[PageReport]:
    """Load each of ``pages`` (paths inside the built ``site``) and report; screenshots go to ``out``.

    ``scroll_to`` maps a page to a CSS selector to scroll into view before its screenshot.
    """
    site = Path(site)
    if not (site / "index.html").is_file():
        raise BrowserError(f"{site} holds no built site (index.html): run `bash docs/build.sh` first")
    chromium = find_chromium()
    server = _serve(site)
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    reports = []
    with tempfile.TemporaryDirectory() as profile:
        browser = _DevTools(chromium, profile)
        try:
            for path in pages:
                reports.append(_check(browser, base, path, out, settle, (scroll_to or {}).get(path)))
        finally:
            log = browser.close()
            server.shutdown()
            server.server_close()
    if not reports and log:
        raise BrowserError(log)
    return reports


def _check(browser: _DevTools, base: str, path: str, out: Path | None, settle: float,
           selector: str | None) -> PageReport:
    report = PageReport(path)
    target = browser.call("Target.createTarget", url="about:blank")["targetId"]
    session = browser.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
    for domain in ("Page", "Runtime", "Log", "Network"):
        browser.call(f"{domain}.enable", session)
    browser.call("Page.setLifecycleEventsEnabled", session, enabled=True)
    browser.call("Emulation.setDeviceMetricsOverride", session, width=WIDTH, height=HEIGHT,
                 deviceScaleFactor=1, mobile=False)
    start = len(browser.events)
    navigated = browser.call("Page.navigate", session, url=base + path)
    if navigated.get("errorText"):
        report.problems.append(f"navigation failed: {navigated['errorText']}")
    if browser.wait_for("Page.loadEventFired", 30, session) is None:
        report.problems.append("the page did not finish loading in 30 s")
    browser.wait_for("Page.lifecycleEvent", 10, session, name="networkIdle")
    browser.wait_for("Page.never", settle, session)  # let late scripts (search worker) report
    state = json.loads(browser.call("Runtime.evaluate", session, expression=_IMAGES,
                                    returnByValue=True)["result"]["value"])
    report.title, report.images = state["title"], state["images"]
    report.problems += [f"broken image: {src}" for src in state["broken"]]
    report.problems += [f"code block cut at {WIDTH} px (scrolls sideways): {line!r}" for line in state["cut"]]
    if selector:
        found = browser.call("Runtime.evaluate", session, returnByValue=True, expression=(
            f"(e => (e && (e.scrollIntoView({{block: 'center'}}), true)) || false)"
            f"(document.querySelector({json.dumps(selector)}))"))["result"]["value"]
        if not found:
            report.problems.append(f"nothing matches {selector!r}")
        browser.wait_for("Page.never", 0.3, session)
    report.problems += _problems(browser.events[start:], session)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        shot = browser.call("Page.captureScreenshot", session, format="png")["data"]
        report.screenshot = out / (path.replace("/index.html", "").replace("/", "_").replace(".html", "") + ".png")
        report.screenshot.write_bytes(base64.b64decode(shot))
    browser.call("Target.closeTarget", targetId=target)
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("site", type=Path)
    parser.add_argument("pages", nargs="+")
    parser.add_argument("--out", type=Path, default=None, help="folder for the screenshots")
    args = parser.parse_args(argv)
    bad = 0
    for report in check_pages(args.site, args.pages, args.out):
        status = "ok" if not report.problems else "BROKEN"
        print(f"{status:6} {report.path}  title={report.title!r} images={report.images} "
              f"screenshot={report.screenshot}")
        for problem in report.problems:
            print(f"       {problem}")
        bad += bool(report.problems)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
