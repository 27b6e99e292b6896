"""Open the built book in headless Chromium and check that its pages load and its images render.

Used by the tests and by ``python -m phasezoo.publish.browser book/_build/html`` (which ``.ci/run``
calls after ``make book PROFILE=smoke``). Chromium is driven by Selenium WebDriver through
Debian's ``chromedriver`` (package ``chromium-driver``, the same version as ``chromium``; nothing
is downloaded): for each page it navigates to the ``file://`` URL, which returns after the load
event, waits for every image to decode, then reads each ``<img>``'s natural and rendered size
from the DOM. A page fails when navigation reports an error, the load event does not come,
the page shows no text (a blank page), or any image has zero natural or rendered width or height
(a broken or empty figure), the page is wider than the 1280-pixel window (horizontal
scrolling), or its text shows a Sphinx or MyST role that was not rendered (``:data:`X```). A
page that forwards elsewhere (Jupyter Book's ``index.html``) is
checked where it lands. Optionally
it saves a full-page PNG screenshot of each page, to look at.

Chromium is Debian's ``chromium`` package and the driver its ``chromium-driver``
(``apt-get install chromium chromium-driver``); :func:`find_chromium` and
:func:`find_chromedriver` look for them on ``PATH`` or in ``$CHROMIUM`` / ``$CHROMEDRIVER``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from phasezoo.errors import PhaseZooError

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")

#: JavaScript run on each page (asynchronously: WebDriver passes the callback last): force eager
#: loading, wait for every image to decode (or fail), then report each image's sizes
_IMAGES_JS = """
const done = arguments[arguments.length - 1];
const imgs = Array.from(document.images);
imgs.forEach(i => { i.loading = 'eager'; });
// the theme may keep the body unrendered for a moment after the load event (innerText is then
// empty): wait up to 5 s for rendered text before reading it
const rendered = () => new Promise(resolve => { const t0 = Date.now(); (function poll() {
  if ((document.body && document.body.innerText.length > 0) || Date.now() - t0 > 5000) resolve();
  else setTimeout(poll, 50); })(); });
Promise.all([rendered(), ...imgs.map(i => i.decode().catch(() => null))]).then(() => done(JSON.stringify({
  title: document.title,
  url: document.location.href,
  text: document.body ? document.body.innerText.length : 0,
  body: document.body ? document.body.innerText : "",
  overflow: Math.max(0, document.documentElement.scrollWidth - document.documentElement.clientWidth),
  images: imgs.map(i => { const r = i.getBoundingClientRect();
    return {src: i.currentSrc || i.src, natural: [i.naturalWidth, i.naturalHeight],
            rendered: [r.width, r.height], complete: i.complete}; })
})));
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
    #: how many pixels the page is wider than the window (0: no horizontal scrolling)
    overflow_px: int = 0
    #: Sphinx or MyST roles shown as text (``:data:`X```, ``{doc}`x```): markup that was not rendered
    raw_roles: list[str] = field(default_factory=list)

    @property
    def bad_images(self) -> list[dict[str, Any]]:
        return [im for im in self.images if min(im["natural"]) <= 0 or min(im["rendered"]) <= 0]

    @property
    def ok(self) -> bool:
        return (self.loaded and not self.error and self.text_chars > 0 and not self.bad_images
                and self.overflow_px <= 0 and not self.raw_roles)

    def problem(self) -> str:
        """What is wrong with the page, in one line ("" when nothing is)."""
        if self.error or not self.loaded:
            return self.error or "did not load"
        if self.text_chars <= 0:
            return "blank page"
        if self.bad_images:
            return f"{len(self.bad_images)} zero-size image(s): {self.bad_images[0]['src']}"
        if self.overflow_px > 0:
            return f"{self.overflow_px} px wider than the {WINDOW[0]} px window"
        if self.raw_roles:
            return f"raw role in the text: {self.raw_roles[0]}"
        return ""


def find_chromium() -> str | None:
    """``$CHROMIUM`` if set, else the first of :data:`CHROMIUM_NAMES` on ``PATH``."""
    if os.environ.get("CHROMIUM"):
        return os.environ["CHROMIUM"]
    return next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)


def one_line_error(text: str) -> str:
    """WebDriver messages run over several lines; errors here are one."""
    return " ".join(str(text).split())


def find_chromedriver() -> str | None:
    """``$CHROMEDRIVER`` if set, else ``chromedriver`` on ``PATH`` (Debian's ``chromium-driver``,
    built with the same version as ``chromium``; Selenium is never left to download a driver)."""
    return os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver")


def _driver(chromium: str, chromedriver: str, timeout: float):
    """A headless Chromium driven by Selenium WebDriver through ``chromedriver``."""
    from selenium import webdriver  # lazy: optional extra "book"
    from selenium.common.exceptions import WebDriverException  # lazy: optional extra "book"
    from selenium.webdriver.chrome.service import Service  # lazy: optional extra "book"

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--no-default-browser-check", "--hide-scrollbars",
                f"--window-size={WINDOW[0]},{WINDOW[1]}", "--allow-file-access-from-files"):
        opts.add_argument(arg)
    try:
        driver = webdriver.Chrome(options=opts, service=Service(executable_path=chromedriver))
    except WebDriverException as e:
        raise PhaseZooError(one_line_error(f"{chromium} did not start through {chromedriver}: {e.msg}")) from None
    driver.set_page_load_timeout(timeout)
    driver.set_script_timeout(timeout)
    return driver


#: the browser window (and the width of full-page screenshots): a 1280-pixel laptop screen
WINDOW = (1280, 1000)
#: a role Sphinx or MyST did not render, as it shows in the page text
RAW_ROLE = re.compile(r"(?<![\w`]):(?:py:)?(?:data|func|class|meth|mod|attr|obj|doc|ref|term|math):`[^`]*`"
                      r"|\{(?:doc|ref|download|numref|eq|term)\}`[^`]*`")


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


def check_pages(html_dir: str | Path, pages: Sequence[str], *, screenshots: str | Path | None = None,
                chromium: str | None = None, chromedriver: str | None = None,
                timeout: float = 60.0) -> list[PageReport]:
    """Open each of ``pages`` (paths relative to ``html_dir``) in headless Chromium; return one
    :class:`PageReport` per page (``screenshots``: a folder for full-page PNGs)."""
    from selenium.common.exceptions import TimeoutException, WebDriverException  # lazy: optional extra "book"

    chromium = chromium or find_chromium()
    if not chromium:
        raise PhaseZooError("no Chromium found (apt-get install chromium, or set $CHROMIUM)")
    chromedriver = chromedriver or find_chromedriver()
    if not chromedriver:
        raise PhaseZooError("no chromedriver found (apt-get install chromium-driver, or set $CHROMEDRIVER)")
    html_dir = Path(html_dir).resolve()
    shots = Path(screenshots) if screenshots else None
    if shots:
        shots.mkdir(parents=True, exist_ok=True)
    driver = _driver(chromium, chromedriver, timeout)
    reports = []
    try:
        for page in pages:
            path = _follow_refresh(html_dir / page)
            if not path.is_file():
                reports.append(PageReport(page, False, f"no such file: {path}"))
                continue
            try:
                driver.get(path.as_uri())  # returns after the load event
                info = json.loads(driver.execute_async_script(_IMAGES_JS))
            except TimeoutException:
                reports.append(PageReport(page, False, f"no load event within {timeout:g} s"))
                continue
            except WebDriverException as e:
                reports.append(PageReport(page, False, one_line_error(e.msg)))
                continue
            if info["url"].startswith("chrome-error://"):
                reports.append(PageReport(page, False, f"navigation failed: {info['title']}"))
                continue
            report = PageReport(page, True, title=info["title"], text_chars=info["text"], images=info["images"],
                                url=info["url"], overflow_px=int(info["overflow"]),
                                raw_roles=RAW_ROLE.findall(info["body"]))
            if shots:
                # a full-page shot: grow the window to the page's height (at most 12000 px)
                height = int(driver.execute_script("return document.documentElement.scrollHeight"))
                driver.set_window_size(WINDOW[0], min(max(height, WINDOW[1]), 12000))
                target = shots / (page.replace("/", "_").removesuffix(".html") + ".png")
                target.write_bytes(driver.get_screenshot_as_png())
                driver.set_window_size(*WINDOW)
                report.screenshot = str(target)
            reports.append(report)
    finally:
        driver.quit()  # ends chromedriver and the browser it started
    return reports


#: generated pages that are not part of the book's text (Sphinx's index and search pages)
NOT_PAGES = ("genindex.html", "search.html", "py-modindex.html")


def book_pages(html_dir: str | Path) -> list[str]:
    """Every page of the built book: each ``.html`` file under ``html_dir`` outside Sphinx's
    ``_static``/``_sources``/``_images`` folders, except :data:`NOT_PAGES`; ``index.html`` first."""
    html_dir = Path(html_dir)
    pages = sorted(p.relative_to(html_dir).as_posix() for p in html_dir.rglob("*.html")
                   if not p.relative_to(html_dir).parts[0].startswith("_") and p.name not in NOT_PAGES)
    return sorted(pages, key=lambda p: p != "index.html")


def main(argv: list[str] | None = None) -> int:
    """``python -m phasezoo.publish.browser HTML_DIR [--screenshots DIR]``: check every page
    (:func:`book_pages`) at 1280 pixels; exit 1 when a page does not load, is blank, shows a
    zero-size image, is wider than the window or shows a raw role; one line per page."""
    p = argparse.ArgumentParser(prog="python -m phasezoo.publish.browser", description=main.__doc__)
    p.add_argument("html_dir", type=Path)
    p.add_argument("--screenshots", type=Path, default=None)
    args = p.parse_args(argv)
    try:
        pages = book_pages(args.html_dir)
        if not any(p.startswith("executed/phases/") for p in pages):
            raise PhaseZooError(f"{args.html_dir}: no phase pages (executed/phases/*.html); build the book first")
        reports = check_pages(args.html_dir, pages, screenshots=args.screenshots)
    except PhaseZooError as e:
        print(f"phasezoo.publish.browser: error: {e}", file=sys.stderr)
        return 2
    for r in reports:
        status = "ok" if r.ok else "FAIL"
        detail = r.problem() or f"{len(r.images)} images, {r.text_chars} characters"
        print(f"{status:4s} {r.path}: {detail}" + (f" -> {r.screenshot}" if r.screenshot else ""))
    bad = sum(not r.ok for r in reports)
    print(f"{len(reports) - bad} of {len(reports)} pages ok at {WINDOW[0]} px")
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
