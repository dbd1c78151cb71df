"""The built book in a real browser: headless Chromium over ``_build/html`` served on 127.0.0.1.

Run after ``jupyter-book build . --all -W -n --keep-going``::

    pytest -m browser tests/test_browser.py

Without a build the tests skip -- except under CI (``$CI`` set), where a missing build is a
failure.  ``$BOOK_HTML`` points them at another build directory.

The browser is Debian's Chromium (``/usr/bin/chromium``, ``$CHROMIUM`` overrides it) driven by
Playwright's Python package; no browser is downloaded.  Every request to a host other than the
local server is aborted, so the test sees exactly what a reader without a network sees: the
book must be self-contained (its MathJax is served from ``_static/mathjax``, see
``book/_ext/offline_mathjax.py``).  The only console errors ignored are the ``Failed to load
resource`` lines of those aborted external requests -- optional extras of the theme, such as
its web fonts -- which are checked separately not to include anything the page needs (scripts
and style sheets of the book itself are all local).
"""

from __future__ import annotations

import functools
import html
import http.server
import os
import re
import threading
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

import pytest

from coursepkg import teaching

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
BUILD = Path(os.environ.get("BOOK_HTML", ROOT / "_build" / "html"))
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 20_000


def _missing_build_reason() -> str | None:
    if (BUILD / "index.html").exists():
        return None
    return f"no built book at {BUILD}: run `jupyter-book build . --all -W -n --keep-going` first"


if _missing_build_reason() and os.environ.get("CI"):
    # Under CI the book is built before the tests run: a missing build is a failure, not a skip.
    def test_book_was_built():
        pytest.fail(_missing_build_reason() + " (CI is set, so this is an error)")
elif _missing_build_reason():
    pytest.skip(_missing_build_reason(), allow_module_level=True)


def toc_pages() -> list[tuple[str, str]]:
    """``[(toc entry, html path relative to the build)]`` for every page of ``_toc.yml``."""
    return [(entry, entry + ".html") for entry in teaching.toc_files(ROOT)]


def notebook_pages() -> list[tuple[str, str]]:
    return [(e, h) for e, h in toc_pages() if (ROOT / (e + ".ipynb")).exists()]


PAGES = toc_pages()


# ---------------------------------------------------------------------------------------------
# Fixtures: a local server and one browser for the module
# ---------------------------------------------------------------------------------------------


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest's output clean
        pass


@pytest.fixture(scope="module")
def server():
    handler = functools.partial(_QuietHandler, directory=str(BUILD))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        message = f"no Chromium at {CHROMIUM} (Debian package `chromium`)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


class Visit:
    """One page opened in a fresh context, with what went wrong while it loaded."""

    def __init__(self, browser, server: str, path: str):
        self.server = server
        self.context = browser.new_context()
        self.page = self.context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.console_errors: list[str] = []
        self.page_errors: list[str] = []
        self.blocked: list[str] = []
        self.local_failures: list[str] = []
        self.context.route("**/*", self._route)
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda err: self.page_errors.append(str(err)))
        self.page.on("requestfailed", self._failed)
        self.page.on("response", self._response)
        self.response = self.page.goto(urljoin(server, path), wait_until="load")

    def _is_local(self, url: str) -> bool:
        return url.startswith(self.server) or url.startswith(("data:", "blob:", "about:"))

    def _route(self, route):
        if self._is_local(route.request.url):
            route.continue_()
        else:
            self.blocked.append(route.request.url)
            route.abort()

    def _console(self, msg):
        if msg.type != "error":
            return
        url = (msg.location or {}).get("url", "")
        if msg.text.startswith("Failed to load resource") and url and not self._is_local(url):
            return  # an aborted external request: judged through self.blocked instead
        self.console_errors.append(f"{msg.text} ({url})")

    def _failed(self, request):
        if self._is_local(request.url):
            self.local_failures.append(f"{request.url}: {request.failure}")

    def _response(self, response):
        if self._is_local(response.url) and response.status >= 400:
            self.local_failures.append(f"{response.url}: HTTP {response.status}")

    def close(self):
        self.context.close()


@pytest.fixture
def visit(browser, server):
    opened = []

    def open_page(path: str) -> Visit:
        v = Visit(browser, server, path)
        opened.append(v)
        return v

    yield open_page
    for v in opened:
        v.close()


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("entry,path", PAGES, ids=[e for e, _ in PAGES])
def test_page_loads_cleanly_with_its_images(visit, entry, path):
    assert (BUILD / path).exists(), f"{entry} was not built: {path} is missing"
    v = visit(path)
    assert v.response is not None and v.response.ok, f"{path}: HTTP {v.response and v.response.status}"
    v.page.wait_for_load_state("networkidle")
    assert not v.page_errors, f"{path}: JavaScript errors {v.page_errors}"
    assert not v.console_errors, f"{path}: console errors {v.console_errors}"
    assert not v.local_failures, f"{path}: local resources failed {v.local_failures}"
    needed = [u for u in v.blocked if re.search(r"\.(js|css)(\?|$)", urlparse(u).path)
              and "fonts.googleapis" not in u]
    assert not needed, f"{path}: the page needs scripts or styles from the network: {needed}"
    broken = v.page.evaluate("""async () => {
        const images = Array.from(document.images);
        for (const img of images) { img.loading = "eager"; }
        await Promise.all(images.map(img => img.complete ? null :
            new Promise(done => { img.onload = img.onerror = done; })));
        return images.filter(img => !(img.naturalWidth > 0)).map(img => img.src);
    }""")
    assert not broken, f"{path}: images that did not load: {broken}"
    assert v.page.title(), f"{path}: no <title>"


def _ids_in(file: Path) -> set[str]:
    text = file.read_text(encoding="utf-8", errors="replace")
    return {html.unescape(m) for m in re.findall(r'\sid="([^"]+)"', text)}


@pytest.mark.parametrize("entry,path", PAGES, ids=[e for e, _ in PAGES])
def test_internal_links_resolve(visit, server, entry, path):
    v = visit(path)
    hrefs = v.page.eval_on_selector_all("a[href]", "links => links.map(a => a.href)")
    broken = []
    for href in hrefs:
        if not href.startswith(server):
            continue
        parsed = urlparse(href)
        target = BUILD / unquote(parsed.path.lstrip("/"))
        if target.is_dir():
            target = target / "index.html"
        if not target.exists():
            broken.append(href)
        elif parsed.fragment and target.suffix == ".html" and \
                unquote(parsed.fragment) not in _ids_in(target):
            broken.append(href)
    assert not broken, f"{path}: links to nothing: {sorted(set(broken))}"


def _pages_with_maths() -> list[str]:
    return [p for _, p in PAGES if (BUILD / p).exists()
            and 'class="math' in (BUILD / p).read_text(encoding="utf-8", errors="replace")]


def test_maths_renders_offline(visit):
    pages = _pages_with_maths()
    assert pages, "no page of the book has maths: the glossary at least should"
    v = visit(pages[0])
    v.page.wait_for_selector("mjx-container, .MathJax_CHTML, .MathJax_SVG, .MathJax",
                             state="attached")
    rendered = v.page.evaluate("""() => ({
        math: document.querySelectorAll('.math').length,
        typeset: document.querySelectorAll('mjx-container, .MathJax_CHTML, .MathJax_SVG, .MathJax').length,
        errors: document.querySelectorAll('.MathJax_Error, merror, mjx-merror').length,
    })""")
    assert rendered["typeset"] >= rendered["math"] > 0, f"{pages[0]}: not all maths typeset {rendered}"
    assert rendered["errors"] == 0, f"{pages[0]}: MathJax reported errors {rendered}"
    assert not v.console_errors and not v.local_failures, (v.console_errors, v.local_failures)


def test_search_finds_pages(visit):
    v = visit("search.html?q=adversarial")
    v.page.wait_for_selector("#search-results ul.search li", state="attached")
    results = v.page.eval_on_selector_all("#search-results ul.search li a",
                                          "links => links.map(a => a.getAttribute('href'))")
    assert len(results) >= 3, f"search for 'adversarial' found only {results}"
    assert any("glossary" in r for r in results), results


@pytest.mark.parametrize("entry,path", notebook_pages() or [pytest.param(
    "", "", marks=pytest.mark.skip(reason="no chapter notebook built yet"))],
    ids=[e for e, _ in notebook_pages()] or ["none"])
def test_launch_buttons_open_this_notebook(visit, entry, path):
    v = visit(path)
    hrefs = v.page.eval_on_selector_all("a[href]", "links => links.map(a => a.href)")
    notebook = f"{entry}.ipynb"
    colab = [h for h in hrefs if "colab.research.google.com" in h]
    binder = [h for h in hrefs if "mybinder.org" in h]
    assert colab and all(h.endswith(notebook) for h in colab), f"{path}: Colab links {colab}"
    assert binder and all(notebook in unquote(h) for h in binder), f"{path}: Binder links {binder}"
    repo = teaching_repo()
    assert all(repo in h for h in colab), f"Colab must open {repo}: {colab}"


def teaching_repo() -> str:
    import yaml
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    return urlparse(config["repository"]["url"]).path.strip("/")


# ---------------------------------------------------------------------------------------------
# The teaching kit: the instructors' page and the slide decks (book/_ext/slides.py)
# ---------------------------------------------------------------------------------------------

INSTRUCTORS = "book/instructors.html"


def _decks() -> list[str]:
    return [f"slides/{p.stem}.slides.html" for p in teaching.chapter_notebooks(ROOT)]


def test_every_chapter_has_a_slide_deck():
    missing = [d for d in _decks() if not (BUILD / d).exists()]
    assert not missing, f"decks not built (book/_ext/slides.py): {missing}"


def test_instructors_page_loads_offline_and_links_every_deck(visit):
    v = visit(INSTRUCTORS)
    v.page.wait_for_load_state("networkidle")
    assert not v.page_errors and not v.console_errors, (v.page_errors, v.console_errors)
    assert not v.local_failures, v.local_failures
    assert not v.blocked, f"{INSTRUCTORS}: requests leaving the machine: {v.blocked}"
    hrefs = v.page.eval_on_selector_all("a[href]", "links => links.map(a => a.href)")
    linked = {urlparse(h).path.lstrip("/") for h in hrefs if h.startswith(v.server)}
    missing = [d for d in _decks() if d not in linked]
    assert not missing, f"{INSTRUCTORS} does not link the decks {missing}"
    rows = v.page.eval_on_selector_all("table.exercise-table tbody tr", "rows => rows.length")
    assert rows >= 3 * len(_decks()), f"the exercise table has {rows} rows"


def test_slide_deck_runs_reveal_offline(visit):
    decks = [d for d in _decks() if (BUILD / d).exists()]
    assert decks, "no slide deck was built"
    v = visit(decks[0])
    v.page.wait_for_function("() => window.Reveal && Reveal.isReady()")
    v.page.wait_for_load_state("networkidle")
    state = v.page.evaluate("""() => ({slides: Reveal.getTotalSlides(),
        mathjax: typeof window.MathJax !== 'undefined',
        maths: document.querySelectorAll('.MathJax_CHTML, .MathJax, mjx-container').length,
        errors: document.querySelectorAll('.MathJax_Error, merror').length})""")
    assert state["slides"] > 3, f"{decks[0]}: only {state['slides']} slides"
    assert state["mathjax"], f"{decks[0]}: MathJax did not load from _static/mathjax"
    assert state["errors"] == 0, f"{decks[0]}: MathJax errors {state}"
    assert not v.page_errors and not v.console_errors, (v.page_errors, v.console_errors)
    assert not v.local_failures, v.local_failures
    assert not v.blocked, f"{decks[0]}: requests leaving the machine: {v.blocked}"
    v.page.keyboard.press("ArrowRight")
    assert v.page.evaluate("() => Reveal.getIndices().h") == 1, "the deck does not advance"


# ---------------------------------------------------------------------------------------------
# The report of `python -m coursepkg.report`: one self-contained page, opened offline
# ---------------------------------------------------------------------------------------------


def test_model_report_opens_offline_with_its_verdict(browser, tmp_path, monkeypatch):
    import torch
    from torch import nn

    from coursepkg import config, report

    monkeypatch.setenv("COURSEPKG_RESULTS_STORE", "off")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10)).eval()
    x = torch.rand(24, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = model(x).argmax(1)
    small = config.profile("quick").replace(apgd_steps=3, apgd_restarts=1, apgd_targets=2, pgd_steps=3,
                                            pgd_restarts=1, expensive_eval_subset=12)
    r = report.evaluate_model(model, x, y, eps=0.05, profile=small, baseline=False, progress=False,
                              name="tiny seeded model")
    report.write_report(r, tmp_path)
    handler = functools.partial(_QuietHandler, directory=str(tmp_path))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    v = Visit(browser, f"http://127.0.0.1:{httpd.server_address[1]}/", "report.html")
    try:
        v.page.wait_for_load_state("networkidle")
        assert v.response is not None and v.response.ok
        assert not v.page_errors and not v.console_errors, (v.page_errors, v.console_errors)
        assert not v.local_failures, v.local_failures
        assert not v.blocked, f"report.html: requests leaving the machine: {v.blocked}"
        verdict = v.page.text_content("#verdict-text")
        assert verdict and "not lowered by the attacks run" in verdict, verdict
        plotted = v.page.evaluate("() => Array.from(document.images).map(i => i.naturalWidth)")
        assert plotted and all(w > 0 for w in plotted), plotted
    finally:
        v.close()
        httpd.shutdown()
        httpd.server_close()
