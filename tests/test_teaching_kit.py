"""The teaching kit's machinery: measured chapter times, the book's extension, slides, grader.

* ``benchmarks/chapter_times.py`` records one setting without touching the others, and reads
  times from RESULTS.md and from a build's Sphinx environment;
* ``book/_ext/chapter_facts.py`` turns them into the ``{{ runtime_<stem> }}`` sentences and
  parses exercise label lines;
* ``book/_ext/slides.py`` sets slide metadata and writes decks that load nothing remote;
* the grader, ``python -m coursepkg.exercises.grade``, is tested in ``tests/test_grade.py``.
"""

from __future__ import annotations

import importlib.util
import json
import pickle
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest

from coursepkg import teaching

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book" / "_ext"))
import chapter_facts  # noqa: E402
import slides  # noqa: E402


def _load_times_script():
    spec = importlib.util.spec_from_file_location("chapter_times",
                                                  ROOT / "benchmarks" / "chapter_times.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


chapter_times = _load_times_script()


# --------------------------------------------------------------------------------------------
# benchmarks/chapter_times.py
# --------------------------------------------------------------------------------------------


def test_a_new_measurement_replaces_only_its_setting(tmp_path):
    path = tmp_path / "times.json"
    chapter_times.record("quick-cpu", {"01_a": 80.04}, machine="2-core CPU", profile="quick",
                         cache="cold", date="2026-01-01", source="test", path=path)
    chapter_times.record("full-gpu", {"01_a": 20.0}, machine="H100 GPU", profile="full",
                         cache="warm", date="2026-01-02", source="test", path=path)
    chapter_times.record("quick-cpu", {"01_a": 90.0, "02_b": 10.0}, machine="2-core CPU",
                         profile="quick", cache="cold", date="2026-01-03", source="t", path=path)
    data = json.loads(path.read_text())
    assert data["quick-cpu"]["seconds"] == {"01_a": 90.0, "02_b": 10.0}
    assert data["quick-cpu"]["date"] == "2026-01-03"
    assert data["full-gpu"]["seconds"] == {"01_a": 20.0}
    assert data["full-gpu"]["machine"] == "H100 GPU"


def test_record_refuses_bad_input(tmp_path):
    with pytest.raises(ValueError, match="cache"):
        chapter_times.record("quick-cpu", {"01_a": 1.0}, machine="m", profile="quick",
                             cache="lukewarm", date="d", source="s", path=tmp_path / "t.json")
    with pytest.raises(ValueError, match="no chapter time"):
        chapter_times.record("quick-cpu", {}, machine="m", profile="quick", cache="cold",
                             date="d", source="s", path=tmp_path / "t.json")


def test_times_from_results_reads_only_the_ci_section(tmp_path):
    results = tmp_path / "RESULTS.md"
    results.write_text(
        "# Benchmarks\n\n## Other\n\n| of which executing `09_other` | 5 s |\n\n"
        "## The book and the test suite (CI)\n\nMeasured on 2026-11-29 in a fresh clone.\n\n"
        "| step | wall time |\n|---|---|\n"
        "| of which executing `01_threat_models` (trains the baseline) | 83 s |\n"
        "| of which executing `02_augmentation` (trains six recipes) | 206.5 s |\n\n"
        "## Later\n\n| of which executing `03_x` | 7 s |\n")
    seconds, date = chapter_times.times_from_results(results)
    assert seconds == {"01_threat_models": 83.0, "02_augmentation": 206.5}
    assert date == "2026-11-29"


def test_times_from_results_reads_the_newest_column_and_its_date(tmp_path):
    results = tmp_path / "RESULTS.md"
    results.write_text(
        "## The book and the test suite (CI)\n\nMeasured on 2026-11-29 in a fresh clone.\n\n"
        "| step | 2026-11-29 | 2026-12-03 |\n|---|---|---|\n"
        "| of which executing `01_threat_models` (trains) | 83 s | 117 s |\n"
        "| of which executing `03_purification` | 221 s | 295 s (100 images) |\n\n"
        "The newest column: measured on 2026-12-03 in a fresh clone.\n")
    seconds, date = chapter_times.times_from_results(results)
    assert seconds == {"01_threat_models": 117.0, "03_purification": 295.0}
    assert date == "2026-12-03"


def test_times_from_build_reads_myst_nb_exec_data(tmp_path):
    # The shape myst-nb leaves in the pickled Sphinx environment (env.nb_metadata).
    env = SimpleNamespace(nb_metadata={
        "book/01_threat_models": {"exec_data": {"runtime": 81.25, "succeeded": True}},
        "book/02_augmentation": {"exec_data": {"runtime": 9.0, "succeeded": False}},
        "book/intro": {"exec_data": {"runtime": 1.0, "succeeded": True}},
        "book/03_purification": {},
    })
    (tmp_path / ".doctrees").mkdir()
    with (tmp_path / ".doctrees" / "environment.pickle").open("wb") as f:
        pickle.dump(env, f)
    assert chapter_times.times_from_build(tmp_path) == {"01_threat_models": 81.25}
    with pytest.raises(FileNotFoundError, match="environment.pickle"):
        chapter_times.times_from_build(tmp_path / "nowhere")


def test_committed_times_file_covers_written_chapters():
    data = json.loads((ROOT / "benchmarks" / "chapter_times.json").read_text())
    record = data["quick-cpu"]
    assert record["profile"] == "quick" and record["cache"] in ("cold", "warm")
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", record["date"])
    assert all(s > 0 for s in record["seconds"].values())


# --------------------------------------------------------------------------------------------
# book/_ext/chapter_facts.py: running times
# --------------------------------------------------------------------------------------------


TIMES = {"quick-cpu": {"machine": "2-core CPU", "profile": "quick", "cache": "cold",
                       "date": "2026-11-29", "seconds": {"01_a": 83.0, "02_b": 206.0}}}


@pytest.mark.parametrize("seconds,text", [(40, "about 40 seconds"), (83, "about 1.5 minutes"),
                                          (60, "about 1 minute"), (206, "about 3.5 minutes"),
                                          (181, "about 3 minutes"), (3, "about 10 seconds")])
def test_duration_text(seconds, text):
    assert chapter_facts.duration_text(seconds) == text


def test_runtime_text_names_both_settings():
    assert chapter_facts.runtime_text("01_a", TIMES) == (
        "About 1.5 minutes in the quick profile on a 2-core CPU, from an empty model cache "
        "(measured 2026-11-29); the full profile on a GPU: not measured yet.")


def test_runtime_text_of_an_unmeasured_chapter():
    assert chapter_facts.runtime_text("07_c", TIMES) == (
        "The quick profile on a 2-core CPU: not measured yet; "
        "the full profile on a GPU: not measured yet.")
    assert "not measured yet" in chapter_facts.runtime_text("01_a", {})


def test_runtime_text_with_a_gpu_measurement():
    times = dict(TIMES, **{"full-gpu": {"machine": "H200 GPU", "profile": "full",
                                        "cache": "warm", "date": "2026-12-01",
                                        "seconds": {"01_a": 30.0}}})
    text = chapter_facts.runtime_text("01_a", times)
    assert text.endswith("; about 30 seconds in the full profile on an H200 GPU, with every "
                         "model already cached (measured 2026-12-01).")


def test_every_chapter_has_a_runtime_substitution():
    subs = chapter_facts.substitutions(ROOT)
    for path in teaching.chapter_notebooks(ROOT):
        assert f"runtime_{path.stem}" in subs
        assert subs[f"runtime_{path.stem}"].endswith(".")
    numbered = [Path(e).name for e in teaching.toc_files(ROOT) if re.match(r"book/\d\d_", e)]
    assert {f"runtime_{s}" for s in numbered} <= set(subs)


def test_config_registers_the_extensions_and_substitutions_are_enabled():
    import yaml

    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    local = config["sphinx"]["local_extensions"]
    assert local.get("chapter_facts") == "book/_ext" and local.get("slides") == "book/_ext"
    extensions = (config.get("parse") or {}).get("myst_enable_extensions")
    assert extensions is None or "substitution" in extensions, \
        "myst_enable_extensions must keep `substitution` for {{ runtime_... }}"


# --------------------------------------------------------------------------------------------
# book/_ext/chapter_facts.py: exercises
# --------------------------------------------------------------------------------------------


def _nb(*cells):
    nb = nbformat.v4.new_notebook()
    for kind, source, tags in cells:
        new = nbformat.v4.new_markdown_cell if kind == "md" else nbformat.v4.new_code_cell
        cell = new(source)
        cell.metadata["tags"] = list(tags)
        nb.cells.append(cell)
    return nb


def test_parse_label():
    assert chapter_facts.parse_label(
        "**Exercise 2 (a targeted attack, by hand).** ★★ · coding · lab · 20 min") == {
        "number": 2, "title": "a targeted attack, by hand", "stars": 2, "kind": "coding",
        "setting": "lab", "minutes": 20}
    for wrong in ("**Exercise 2 (a).** ★★★★ · coding · lab · 20 min",
                  "**Exercise 2 (a).** ★★ · coding · class · 20 min",
                  "**Exercise 2 (a).** ★★ - coding - lab - 20 min",
                  "**Exercise 2.** ★ · written · homework · 5 min",
                  "**Exercise 2 (a).** ★ · written · homework"):
        assert chapter_facts.parse_label(wrong) is None, wrong


def test_parse_exercises_finds_labels_and_checks():
    nb = _nb(("md", ("## Exercises\n\n**Exercise 1 (balls).** ★ · written · homework · "
                     "10 min\nText mentioning Exercise 2."), []),
             ("md", "```{admonition} Solution\n:class: dropdown\n**Exercise 9 (x).**\n```",
              ["solution"]),
             ("md", "**Exercise 2 (attack).** ★★★ · coding · lab · 30 min", []),
             ("code", "def f(): ...", ["solution", "hide-input"]),
             ("code", "check(f)", ["check"]),
             ("md", "**Exercise 3 (no label).** Think.", []),
             ("code", "x = 1", []))
    found = chapter_facts.parse_exercises(nb, "01_x")
    assert [(e.number, e.stars, e.kind, e.setting, e.minutes, e.checked) for e in found] == [
        (1, 1, "written", "homework", 10, False), (2, 3, "coding", "lab", 30, True),
        (None, None, None, None, None, False)]
    assert found[2].line.startswith("**Exercise 3") and not found[2].labelled


def test_slides_href_is_relative_to_the_page():
    assert chapter_facts.slides_href("book/instructors", "01_a") == "../slides/01_a.slides.html"
    assert chapter_facts.slides_href("index", "01_a") == "slides/01_a.slides.html"


# --------------------------------------------------------------------------------------------
# book/_ext/slides.py
# --------------------------------------------------------------------------------------------


def _output(text=None, png=False, name=None):
    if name:
        return nbformat.v4.new_output("stream", name=name, text=text)
    data = {"text/plain": text or "<Figure>"}
    if png:
        data["image/png"] = "iVBORw0KGgo="
    return nbformat.v4.new_output("display_data", data=data)


def test_slide_notebook_sets_metadata_by_the_rules():
    nb = _nb(("md", "# 1. Title\n\nIntro.", []),
             ("code", "import x", ["remove-cell"]),
             ("md", "## A section", []),
             ("code", "plot()", []),
             ("code", "x = 1", []),
             ("md", "### A sub-section", []),
             ("code", "long()", []),
             ("md", "**Exercise 1 (a).** text", []),
             ("code", "solution()", ["solution", "hide-input"]),
             ("md", "A preset skip", []),
             ("md", "A preset fragment", []))
    nb.cells[3].outputs = [_output(png=True), _output("noise\n", name="stderr")]
    nb.cells[6].outputs = [_output("\n".join(str(i) for i in range(40)))]
    nb.cells[8].outputs = [_output("answer")]
    nb.cells[9].metadata["slideshow"] = {"slide_type": "skip"}
    nb.cells[10].metadata["slideshow"] = {"slide_type": "fragment"}
    original = nbformat.writes(nb)
    deck = slides.slide_notebook(nb)
    types = [c.metadata["slideshow"]["slide_type"] for c in deck.cells]
    assert types == ["slide", "skip", "slide", "-", "skip", "subslide", "skip", "-", "skip",
                     "skip", "fragment"]
    assert len(deck.cells[3].outputs) == 1, "stderr is dropped, the figure kept"
    assert deck.cells[6].outputs == [], "a long text output is dropped"
    assert nbformat.writes(nb) == original, "the input notebook is not modified"


def test_slide_notebook_starts_a_subslide_when_a_slide_is_full():
    cells = [("md", "## Section", [])] + [("code", f"fig{i}()", []) for i in range(4)]
    nb = _nb(*cells)
    for cell in nb.cells[1:]:
        cell.outputs = [_output(png=True)]
    types = [c.metadata["slideshow"]["slide_type"] for c in slides.slide_notebook(nb).cells]
    assert types[0] == "slide" and "subslide" in types[2:]
    assert types[1] == "-", "the first figure stays with its heading"


def test_plain_markdown_removes_myst_syntax():
    text = ("(sec-x)=\n```{admonition} Before you start\n:class: note\n**Running time.** "
            "{{ runtime_01_a }}\n```\nSee {cite}`a2020b,c2021d` and the {term}`EOT` of "
            "{term}`gradients <gradient masking>`.")
    out = slides.plain_markdown(text, {"runtime_01_a": "About 2 minutes."})
    assert "> **Before you start**" in out and "About 2 minutes." in out
    assert "[a2020b, c2021d]" in out and "the EOT of gradients." in out
    assert "{" not in out and ":class:" not in out and "(sec-x)=" not in out


def test_deck_loads_nothing_from_the_network():
    nb = _nb(("md", "# 1. Title\n\n$x^2$", []), ("code", "1", []))
    nb.cells[1].outputs = [_output("1")]
    html = slides.export_deck(slides.slide_notebook(nb), reveal_prefix="../_static/revealjs",
                              mathjax_url="../_static/mathjax/MathJax.js?config=TeX-AMS_CHTML",
                              title="Title")
    urls = re.findall(r'<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)="([^"]*)"', html)
    urls += re.findall(r"@import\s+url\(([^)]*)\)", html)
    assert "../_static/revealjs/dist/reveal.js" in urls
    assert not [u for u in urls if re.match(r"(https?:)?//", u)], urls
    assert "require(" not in html and "Reveal.initialize" in html


def test_reveal_js_is_available_offline():
    source = slides.revealjs_source()
    assert source is not None, "install the book extra (sphinx-revealjs ships reveal.js)"
    assert (source / "dist" / "reveal.js").is_file()
    assert (source / "plugin" / "notes" / "notes.js").is_file()
    theme = (source / "dist" / "theme" / f"{slides.THEME}.css").read_text(encoding="utf-8")
    assert not re.search(r"url\((['\"]?)(https?:)?//", theme), "the theme must not fetch fonts"


def test_split_markdown_keeps_fences_whole_and_respects_the_budget():
    fence = "```python\n" + "\n\n".join(f"line{i}" for i in range(6)) + "\n```"
    paragraphs = [f"Paragraph {i} " + "word " * 30 for i in range(12)]
    source = "## Heading\n\n" + "\n\n".join(paragraphs[:6]) + "\n\n" + fence + "\n\n" + \
        "\n\n".join(paragraphs[6:])
    pieces = slides.split_markdown(source, budget=8)
    assert len(pieces) > 2
    assert "\n\n".join(pieces) == source, "nothing lost, nothing reordered"
    assert sum(fence in p for p in pieces) == 1, "a fenced block is never cut"
    assert all(p.strip() for p in pieces)
    assert slides.split_markdown("short") == ["short"]


def test_a_long_markdown_cell_spreads_over_subslides():
    nb = _nb(("md", "## Section\n\n" + "\n\n".join("word " * 60 for _ in range(12)), []))
    deck = slides.slide_notebook(nb)
    types = [c.metadata["slideshow"]["slide_type"] for c in deck.cells]
    assert types[0] == "slide" and len(types) > 2 and set(types[1:]) <= {"subslide", "-"}
    assert "subslide" in types
