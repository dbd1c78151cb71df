"""The book's conventions (CONTRIBUTING.md), checked on every page of ``_toc.yml``.

Each check is parametrised over the chapter notebooks, so a chapter that misses one fails by
name.  The rules, where CONTRIBUTING.md leaves a choice:

* **Exercises.**  An exercise is a markdown cell tagged ``exercise``, or a markdown cell with a
  line that starts ``Exercise`` as a heading (``### Exercise 2``) or in bold
  (``**Exercise 2.**``).  Every chapter has at least three, and at least as many cells
  tagged ``solution``; one solution at least is a code cell that uses ``coursepkg``.
* **At a glance.**  Defence chapters (2 and later) open -- before their first ``##``
  section -- with the ``At a glance`` admonition and its five labels.  Chapter 1 has no defence,
  so it only has to open with its threat model: an ``At a glance`` box with a
  ``**Threat model.**`` label, or an admonition whose title starts ``Threat model``.
* **Widgets.**  A code cell that uses ipywidgets (directly, or through an ``*_explorer`` of
  ``coursepkg.plots``) needs the "Launch this notebook" line in the notebook and a static figure
  (a code cell drawing with matplotlib or a ``show_*``/``plot_*``/``*_strip`` function of
  ``coursepkg.plots``) within three cells of it.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from coursepkg import teaching

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
TOC_ENTRIES = teaching.toc_files(ROOT)
NOTEBOOKS = [p for p in teaching.chapter_notebooks(ROOT)]
MARKDOWN_PAGES = [Path(e + ".md") for e in TOC_ENTRIES if (ROOT / (e + ".md")).exists()]

LAUNCH_LINE = "Launch this notebook (rocket icon above) to use the interactive explorer."
AT_A_GLANCE_LABELS = ("**Threat model.**", "**Defence.**", "**In its paper.**",
                      "**Circumvented by.**", "**Result.**")
CITE_RE = re.compile(r"\{cite(?::[a-z]+)?\}`([^`]*)`")
TERM_RE = re.compile(r"\{term\}`([^`]*)`")
EXERCISE_RE = re.compile(r"^\s*(#{1,6}\s*|\*\*|__)Exercise\b", re.IGNORECASE | re.MULTILINE)
WIDGET_RE = re.compile(r"\bipywidgets\b|\bwidgets\.\w+\(|\binteract(ive)?\(|_explorer\(")
FIGURE_RE = re.compile(r"\bplt\.|\.imshow\(|\.subplots\(|\bfig\b|\bshow_\w+\(|\bplot_\w+\(|_strip\(")


def _ids(paths):
    return [p.stem for p in paths]


def tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def read(path: Path):
    return nbformat.read(ROOT / path, as_version=4)


def chapter_number(path: Path) -> int:
    match = re.match(r"(\d+)_", path.name)
    assert match, f"{path}: a chapter file is named NN_name"
    return int(match.group(1))


def canonical_setup_cell() -> str:
    """The set-up cell's code, as CONTRIBUTING.md gives it (its first ```python block)."""
    text = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    match = re.search(r"\*\*Set-up cell\*\*.*?```python\n(.*?)```", text, re.DOTALL)
    assert match, "CONTRIBUTING.md no longer shows the set-up cell in a ```python block"
    return "\n".join(line.strip() for line in match.group(1).strip().splitlines())


def glossary_terms() -> set[str]:
    """Every term defined in a ``{glossary}`` block of book/glossary.md, lower-cased (Sphinx
    matches terms case-insensitively)."""
    text = (ROOT / "book" / "glossary.md").read_text(encoding="utf-8")
    terms = set()
    for block in re.findall(r"```\{glossary\}\n(.*?)```", text, re.DOTALL):
        for line in block.splitlines():
            if line.strip() and not line[0].isspace() and not line.startswith(":"):
                terms.add(line.strip().lower())
    return terms


def bib_keys() -> list[str]:
    return re.findall(r"^@\w+\s*\{\s*([^,\s]+)\s*,", (ROOT / "references.bib").read_text(
        encoding="utf-8"), re.MULTILINE)


def markdown_sources() -> dict[str, str]:
    """``{page: markdown text}`` for every page of the book (notebooks: markdown cells), with
    double-backtick code spans removed (they show a role, like ``{cite}`key` ``, as code)."""
    sources = {str(p): (ROOT / p).read_text(encoding="utf-8") for p in MARKDOWN_PAGES}
    for path in NOTEBOOKS:
        sources[str(path)] = "\n\n".join(c.source for c in read(path).cells
                                         if c.cell_type == "markdown")
    return {page: re.sub(r"``.+?``", "", text) for page, text in sources.items()}


def opening(nb) -> str:
    """The markdown of the chapter before its first ``##`` section."""
    parts = []
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        head, found, _ = cell.source.partition("\n## ")
        if cell.source.startswith("## "):
            break
        parts.append(head)
        if found:
            break
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------
# The table of contents and the configuration
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("entry", TOC_ENTRIES)
def test_every_toc_entry_is_exactly_one_page(entry):
    """Every entry is a notebook (a written chapter) or a markdown page (planned chapters, the
    intro, the reference pages), never both: delete the planned page when its notebook lands."""
    found = [ext for ext in (".ipynb", ".md") if (ROOT / (entry + ext)).exists()]
    assert len(found) == 1, f"{entry}: expected one of .ipynb/.md, found {found or 'none'}"


def test_reference_part_lists_glossary_bibliography_and_api():
    for page in ("book/glossary", "book/bibliography", "book/api"):
        assert page in TOC_ENTRIES, f"_toc.yml: add {page} to the Reference part"


def test_planned_chapters_are_markdown_pages_until_written():
    numbered = [e for e in TOC_ENTRIES if re.match(r"book/0[1-8]_", e)]
    assert len(numbered) == 8, f"_toc.yml lists chapters {numbered}; the course has eight"
    for entry in numbered:
        if not (ROOT / (entry + ".ipynb")).exists():
            assert (ROOT / (entry + ".md")).exists(), f"{entry}: write its planned-chapter page"


def test_config_names_repository_and_launch_buttons():
    repo, launch = CONFIG["repository"], CONFIG["launch_buttons"]
    assert repo["url"].startswith("https://github.com/") and repo.get("branch")
    assert CONFIG["html"]["use_repository_button"]
    assert launch["binderhub_url"] == "https://mybinder.org"
    assert launch["colab_url"] == "https://colab.research.google.com"
    assert launch["thebe"] is True
    assert CONFIG["only_build_toc_files"] is True
    assert any("student" in p for p in CONFIG["exclude_patterns"]), "exclude book/student/"


def test_binder_environment_installs_cpu_torch_and_the_package():
    env = yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert "-e ." in pip or "." in pip, "environment.yml must install coursepkg itself"
    assert any("download.pytorch.org/whl/cpu" in line for line in pip), "use CPU PyTorch"


def test_references_have_unique_keys_and_all_required_ones():
    keys = bib_keys()
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    assert not duplicates, f"references.bib defines these keys twice: {duplicates}"
    text = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    listed = re.search(r"## Citation keys[^\n]*\n+`([^`]*)`", text).group(1).split()
    missing = sorted(set(listed) - set(keys))
    assert not missing, f"CONTRIBUTING.md lists keys missing from references.bib: {missing}"


def test_glossary_defines_every_listed_term():
    text = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    listed = re.search(r"## Glossary terms.*?\n\n(.*?)(\n\n|$)", text, re.DOTALL).group(1)
    wanted = {t.strip().lower() for t in listed.replace("\n", " ").split(",") if t.strip()}
    missing = sorted(wanted - glossary_terms())
    assert not missing, f"book/glossary.md lacks: {missing}"


def test_bibliography_page_has_one_bibliography_directive():
    text = (ROOT / "book" / "bibliography.md").read_text(encoding="utf-8")
    assert text.count("{bibliography}") == 1
    others = [p for p, src in markdown_sources().items()
              if "{bibliography}" in src and not p.endswith("bibliography.md")]
    assert not others, f"a second bibliography directive duplicates citations: {others}"


def test_every_cited_key_exists():
    keys = set(bib_keys())
    missing = {}
    for page, text in markdown_sources().items():
        cited = {k.strip() for group in CITE_RE.findall(text) for k in group.split(",")}
        if cited - keys:
            missing[page] = sorted(cited - keys)
    assert not missing, f"cited but not in references.bib: {missing}"


def test_every_linked_term_is_in_the_glossary():
    terms = glossary_terms()
    missing = {}
    for page, text in markdown_sources().items():
        linked = set()
        for target in TERM_RE.findall(text):
            explicit = re.search(r"<([^>]+)>\s*$", target)
            linked.add((explicit.group(1) if explicit else target).strip().lower())
        if linked - terms:
            missing[page] = sorted(linked - terms)
    assert not missing, f"linked with {{term}} but not in book/glossary.md: {missing}"


def test_api_page_is_generated_and_covers_every_module():
    text = (ROOT / teaching.API_PAGE).read_text(encoding="utf-8")
    documented = set(re.findall(r"\.\. automodule:: (\S+)", text))
    assert documented == set(teaching.public_modules()), (
        "book/api.md is out of date: run `python -m coursepkg.teaching`")


# ---------------------------------------------------------------------------------------------
# Chapter notebooks
# ---------------------------------------------------------------------------------------------

needs_notebooks = pytest.mark.skipif(not NOTEBOOKS, reason="no chapter notebook in _toc.yml yet")


@needs_notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_committed_without_outputs(path):
    nb = read(path)
    dirty = [i for i, c in enumerate(nb.cells)
             if c.cell_type == "code" and (c.outputs or c.execution_count is not None)]
    assert not dirty, (f"{path}: cells {dirty} keep outputs; run "
                       f"`jupyter nbconvert --clear-output --inplace {path}`")
    assert "widgets" not in nb.metadata, f"{path}: stored widget state; clear it"
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", \
        f"{path}: the kernel must be python3"


@needs_notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_first_code_cell_is_the_setup_cell(path):
    nb = read(path)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, f"{path}: no code cell"
    first = code[0]
    assert "remove-cell" in tags(first), f"{path}: tag the set-up cell `remove-cell`"
    source = "\n".join(line.strip() for line in first.source.strip().splitlines())
    assert source == canonical_setup_cell(), f"{path}: use CONTRIBUTING.md's set-up cell verbatim"
    # What the canonical cell guarantees, checked on its own in case it is ever edited:
    assert 'if "google.colab" in sys.modules:' in source, "install on Colab only"
    lines = first.source.splitlines()
    installs = [line for line in lines if "pip install" in line]
    assert installs and all(line.startswith((" ", "\t")) for line in installs), \
        "every install sits inside the Colab branch"
    repo, branch = CONFIG["repository"]["url"], CONFIG["repository"]["branch"]
    assert all(f"git+{repo}@{branch}" in line for line in installs), \
        f"install coursepkg from {repo} at branch {branch} (the book's version)"
    lowered = first.source.lower()
    for forbidden in ("install torch", "-u torch", "drive.mount", "getpass", "userdata",
                      "input(", "token", "password"):
        assert forbidden not in lowered, f"{path}: the set-up cell must not use {forbidden!r}"


@needs_notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_chapter_opens_with_title_and_at_a_glance(path):
    nb = read(path)
    number = chapter_number(path)
    first_md = next(c for c in nb.cells if c.cell_type == "markdown")
    assert re.match(rf"#\s+{number}\.\s+\S", first_md.source), \
        f"{path}: the first markdown cell starts with the title `# {number}. ...`"
    head = opening(nb)
    glance = re.search(r"```\{admonition\} At a glance\n(.*?)```", head, re.DOTALL)
    if number == 1:  # no defence yet: the threat model is what the chapter must state
        assert (glance and "**Threat model.**" in glance.group(1)) or \
            re.search(r"\{admonition\}\s*Threat model", head), \
            f"{path}: chapter 1 opens with its threat model (At a glance box or admonition)"
        return
    assert glance, f"{path}: open with the `At a glance` admonition before the first section"
    body = glance.group(1)
    assert ":class: tip" in body
    missing = [label for label in AT_A_GLANCE_LABELS if label not in body]
    assert not missing, f"{path}: the at-a-glance box lacks {missing}"


def _coursepkg_names(nb) -> set[str]:
    """Names bound by `import coursepkg...` / `from coursepkg... import ...` in the notebook."""
    names = {"coursepkg"}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        code = "\n".join(line for line in cell.source.splitlines()
                         if not line.lstrip().startswith(("%", "!")))
        try:
            tree = ast.parse(code)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("coursepkg"):
                names.update(a.asname or a.name for a in node.names)
            elif isinstance(node, ast.Import):
                names.update((a.asname or a.name).split(".")[0] for a in node.names
                             if a.name.startswith("coursepkg"))
    return names


@needs_notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_exercises_with_solutions(path):
    nb = read(path)
    exercises = [c for c in nb.cells if c.cell_type == "markdown" and not ("solution" in tags(c))
                 and ("exercise" in tags(c) or EXERCISE_RE.search(c.source))]
    solutions = [c for c in nb.cells if "solution" in tags(c)]
    assert len(exercises) >= 3, f"{path}: {len(exercises)} exercises; write at least three"
    assert len(solutions) >= len(exercises), \
        f"{path}: {len(exercises)} exercises but {len(solutions)} cells tagged `solution`"
    for cell in solutions:
        if cell.cell_type == "code":
            assert "hide-input" in tags(cell), f"{path}: tag code solutions `hide-input` too"
        else:
            assert re.search(r"\{admonition\}\s*Solution", cell.source) and \
                ":class: dropdown" in cell.source, \
                f"{path}: a markdown solution sits in a `Solution` admonition, `:class: dropdown`"
    names = _coursepkg_names(nb)
    uses = [c for c in solutions if c.cell_type == "code"
            and any(re.search(rf"\b{re.escape(n)}\b", c.source) for n in names)]
    assert uses, f"{path}: one solution at least is code that uses coursepkg"


@needs_notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_widgets_come_with_a_static_figure_and_the_launch_line(path):
    nb = read(path)
    cells = nb.cells
    widget_cells = [i for i, c in enumerate(cells) if c.cell_type == "code"
                    and "remove-cell" not in tags(c) and WIDGET_RE.search(c.source)]
    if not widget_cells:
        return
    markdown = "\n".join(c.source for c in cells if c.cell_type == "markdown")
    assert LAUNCH_LINE in markdown, f"{path}: add the line {LAUNCH_LINE!r} beside the explorer"
    for i in widget_cells:
        nearby = [c for c in cells[max(0, i - 3): i + 4]
                  if c.cell_type == "code" and c is not cells[i] and not WIDGET_RE.search(c.source)
                  and FIGURE_RE.search(c.source)]
        assert nearby, f"{path}: the explorer in cell {i} needs a static figure beside it"


# ---------------------------------------------------------------------------------------------
# The teaching kit (issue 16): the opening box and the exercise labels
# ---------------------------------------------------------------------------------------------

sys.path.insert(0, str(ROOT / "book" / "_ext"))
import chapter_facts  # noqa: E402  (the book's extension: the label parser the table uses)

BEFORE_YOU_START_RE = re.compile(r"```\{admonition\} Before you start\n(.*?)```", re.DOTALL)


def _objectives(body: str) -> list[str]:
    """The list items under ``**After this chapter you can**``."""
    _, found, rest = body.partition("**After this chapter you can**")
    items = []
    for line in rest.splitlines()[1:] if found else []:
        if re.match(r"^\s*[-*]\s+\S", line):
            items.append(line.strip())
        elif line.strip() and not line.startswith((" ", "\t")):
            break  # the next paragraph (Prerequisites)
    return items


@needs_notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_chapter_opens_with_before_you_start(path):
    """The title's cell holds the "Before you start" box: 3-5 objectives, the prerequisites,
    and the running time as the substitution the build fills in (never a typed time)."""
    head = opening(read(path))
    box = BEFORE_YOU_START_RE.search(head)
    assert box, f"{path}: open with the `Before you start` admonition (CONTRIBUTING.md)"
    glance = head.find("{admonition} At a glance")
    assert glance < 0 or box.start() < glance, f"{path}: `Before you start` comes first"
    body = box.group(1)
    assert ":class: note" in body, f"{path}: the box is `:class: note`"
    objectives = _objectives(body)
    assert 3 <= len(objectives) <= 5, \
        f"{path}: {len(objectives)} objectives under **After this chapter you can**; write 3-5"
    assert "**Prerequisites.**" in body, f"{path}: the box states **Prerequisites.**"
    running = re.search(r"\*\*Running time\.\*\*\s*(.*)", body)
    assert running, f"{path}: the box ends with **Running time.** {{{{ runtime_{path.stem} }}}}"
    assert re.fullmatch(rf"\{{\{{\s*runtime_{path.stem}\s*\}}\}}", running.group(1).strip()), \
        f"{path}: the running time is exactly {{{{ runtime_{path.stem} }}}}, never typed"


@needs_notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_every_exercise_has_a_label_line(path):
    """``**Exercise N (short title).** ★★ · coding · lab · 20 min``, numbered 1, 2, ...;
    at least one coding exercise is auto-checked (a cell tagged ``check`` follows it)."""
    exercises = chapter_facts.parse_exercises(read(path), path.stem)
    unlabelled = [e.line[:70] for e in exercises if not e.labelled]
    assert not unlabelled, (f"{path}: exercises without the label line "
                            f"`**Exercise N (title).** ★★ · coding · lab · 20 min`: {unlabelled}")
    numbers = [e.number for e in exercises]
    assert numbers == list(range(1, len(numbers) + 1)), f"{path}: exercises numbered {numbers}"
    checked = [e for e in exercises if e.checked]
    assert checked, f"{path}: no exercise is followed by a cell tagged `check`"
    assert all(e.kind == "coding" for e in checked), f"{path}: a checked exercise is `coding`"
