"""Open the built book in headless Chromium and check that its pages load and its images render.

Used by the tests and by ``python -m phasezoo.publish.browser book/_build/html`` (which ``.ci/run``
calls after ``make book PROFILE=smoke``). Chromium is driven over the Chrome DevTools Protocol
(one websocket, :mod:`websocket`): for each page it navigates to the ``file://`` URL, waits for
the load event and for every image to decode, then reads each ``<img>``'s natural and rendered
size from the DOM. A page fails when navigation reports an error, the load event does not come,
the page shows no text (a blank page), or any image has zero natural or rendered width or height
(a broken or empty figure). A page that forwards elsewhere (Jupyter Book's ``index.html``) is
checked where it lands. Optionally
it saves a full-page PNG screenshot of each page, to look at.

Chromium is Debian's ``chromium`` package (``apt-get install chromium``); :func:`find_chromium`
looks for it on ``PATH`` or in ``$CHROMIUM``.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from phasezoo.errors import PhaseZooError
from phasezoo.executors import start_program, stop_program

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")

#: JavaScript run on each page: force eager loading, wait for every image to decode (or fail),
#: then report each image's sizes
_IMAGES_JS = """
(async () => {
  const imgs = Array.from(document.images);
  imgs.forEach(i => { i.loading = 'eager'; });
  await Promise.all(imgs.map(i => i.decode().catch(() => null)));
  return JSON.stringify({
    title: document.title,
    url: document.location.href,
    text: document.body ? document.body.innerText.length : 0,
    images: imgs.map(i => { const r = i.getBoundingClientRect();
      return {src: i.currentSrc || i.src, natural: [i.naturalWidth, i.naturalHeight],
              rendered: [r.width, r.height], complete: i.complete}; })
  });
})()
"""


@dataclass
class PageReport:
    """What Chromium saw on one page."""

    path: str
    loaded: bool
    error: str = ""
    title: str = ""
    text_chars: int = 0
    images: list[dict[str, Any]] = field(default_factory=list)
    screenshot: str | None = None
    url: str = ""

    @property
    def bad_images(self) -> list[dict[str, Any]]:
        return [im for im in self.images if min(im["natural"]) <= 0 or min(im["rendered"]) <= 0]

    @property
    def ok(self) -> bool:
        return self.loaded and not self.error and self.text_chars > 0 and not self.bad_images


def find_chromium() -> str | None:
    """``$CHROMIUM`` if set, else the first of :data:`CHROMIUM_NAMES` on ``PATH``."""
    if os.environ.get("CHROMIUM"):
        return os.environ["CHROMIUM"]
    return next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)


class _DevTools:
    """A headless Chromium and one websocket to its first page target."""

    def __init__(self, chromium: str, timeout: float = 60.0):
        import websocket

        self.timeout = timeout
        self._profile = tempfile.TemporaryDirectory(prefix="phasezoo-chromium-", ignore_cleanup_errors=True)
        self.proc = start_program(
            [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--no-default-browser-check", "--hide-scrollbars",
             "--window-size=1400,1000", "--remote-debugging-port=0",
             f"--user-data-dir={self._profile.name}", "about:blank"])
        port_file = Path(self._profile.name) / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise PhaseZooError(f"{chromium} did not start (exit {self.proc.returncode})")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        targets: list[dict[str, Any]] = []
        while not targets:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
                targets = [t for t in json.load(r) if t.get("type") == "page"]
            if not targets:
                if time.monotonic() > deadline:
                    self.close()
                    raise PhaseZooError(f"{chromium} opened no page within {timeout:g} s")
                time.sleep(0.1)
        self.ws = websocket.create_connection(targets[0]["webSocketDebuggerUrl"], timeout=timeout,
                                              suppress_origin=True)
        self._id = 0
        self.events: list[dict[str, Any]] = []
        self.call("Page.enable")

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise PhaseZooError(f"{method}: {msg['error'].get('message')}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_event(self, method: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if any(e.get("method") == method for e in self.events):
                self.events = [e for e in self.events if e.get("method") != method]
                return True
            if time.monotonic() > deadline:
                return False
            self.ws.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                self.events.append(json.loads(self.ws.recv()))
            except Exception:  # websocket timeout: loop checks the deadline
                pass
            finally:
                self.ws.settimeout(self.timeout)

    def close(self) -> None:
        try:
            if getattr(self, "ws", None) is not None:
                self.ws.close()
        finally:
            stop_program(self.proc)  # Chromium's helper processes share its session: all of them
            self._profile.cleanup()


_REFRESH = re.compile(r"""<meta\s+http-equiv=["']refresh["']\s+content=["']\d+;\s*url=([^"']+)["']""", re.I)


def _follow_refresh(path: Path) -> Path:
    """The page a ``<meta http-equiv="refresh">`` stub forwards to (Jupyter Book's index.html),
    resolved before navigating so the check does not race the redirect; else ``path``."""
    try:
        head = path.read_text(errors="replace")[:4096]
    except OSError:
        return path
    m = _REFRESH.search(head)
    return (path.parent / m.group(1)).resolve() if m and "://" not in m.group(1) else path


def _page_info(tools: _DevTools) -> dict[str, Any]:
    res = tools.call("Runtime.evaluate", expression=_IMAGES_JS, awaitPromise=True, returnByValue=True)
    return json.loads(res["result"]["value"])


def check_pages(html_dir: str | Path, pages: Sequence[str], *, screenshots: str | Path | None = None,
                chromium: str | None = None, timeout: float = 60.0) -> list[PageReport]:
    """Open each of ``pages`` (paths relative to ``html_dir``) in headless Chromium; return one
    :class:`PageReport` per page (``screenshots``: a folder for full-page PNGs)."""
    chromium = chromium or find_chromium()
    if not chromium:
        raise PhaseZooError("no Chromium found (apt-get install chromium, or set $CHROMIUM)")
    html_dir = Path(html_dir).resolve()
    shots = Path(screenshots) if screenshots else None
    if shots:
        shots.mkdir(parents=True, exist_ok=True)
    tools = _DevTools(chromium, timeout)
    reports = []
    try:
        for page in pages:
            path = _follow_refresh(html_dir / page)
            tools.events.clear()
            nav = tools.call("Page.navigate", url=path.as_uri())
            if nav.get("errorText"):
                reports.append(PageReport(page, False, nav["errorText"]))
                continue
            if not tools.wait_event("Page.loadEventFired", timeout):
                reports.append(PageReport(page, False, f"no load event within {timeout:g} s"))
                continue
            info = _page_info(tools)
            report = PageReport(page, True, title=info["title"], text_chars=info["text"], images=info["images"],
                                url=info["url"])
            if shots:
                # a full-page shot: grow the viewport to the page's height (at most 12000 px)
                height = tools.call("Page.getLayoutMetrics")["cssContentSize"]["height"]
                tools.call("Emulation.setDeviceMetricsOverride", width=1400, height=int(min(height, 12000)),
                           deviceScaleFactor=1, mobile=False)
                png = tools.call("Page.captureScreenshot", format="png")
                tools.call("Emulation.clearDeviceMetricsOverride")
                target = shots / (page.replace("/", "_").removesuffix(".html") + ".png")
                target.write_bytes(base64.b64decode(png["data"]))
                report.screenshot = str(target)
            reports.append(report)
    finally:
        tools.close()
    return reports


def book_pages(html_dir: str | Path) -> list[str]:
    """The pages the book check opens: the index, the comparison and every zoo's phase page."""
    html_dir = Path(html_dir)
    phases = sorted(p.relative_to(html_dir).as_posix() for p in (html_dir / "executed" / "phases").glob("*.html"))
    return ["index.html", "executed/comparison.html", *phases]


def main(argv: list[str] | None = None) -> int:
    """``python -m phasezoo.publish.browser HTML_DIR [--screenshots DIR]``: check :func:`book_pages`;
    exit 1 (one line per failure) when a page does not load or shows a zero-size image."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m phasezoo.publish.browser", description=main.__doc__)
    p.add_argument("html_dir", type=Path)
    p.add_argument("--screenshots", type=Path, default=None)
    args = p.parse_args(argv)
    try:
        pages = book_pages(args.html_dir)
        if len(pages) < 3:
            raise PhaseZooError(f"{args.html_dir}: no phase pages (executed/phases/*.html); build the book first")
        reports = check_pages(args.html_dir, pages, screenshots=args.screenshots)
    except PhaseZooError as e:
        print(f"phasezoo.publish.browser: error: {e}", file=sys.stderr)
        return 2
    for r in reports:
        status = "ok" if r.ok else "FAIL"
        detail = r.error or (f"{len(r.bad_images)} zero-size image(s): {r.bad_images[0]['src']}" if r.bad_images
                             else f"{len(r.images)} images, {r.text_chars} characters")
        print(f"{status:4s} {r.path}: {detail}")
    return 0 if all(r.ok for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
