"""The release a course pins (``coursepkg/_release.py``): one address, one tag, one lock file.

Every place that names the repository or the version agrees with ``coursepkg._release``:
``_config.yml`` (the launch buttons), the chapters' set-up cells (what Colab installs),
CONTRIBUTING.md's set-up cell, the instructors' Colab links; and ``requirements-lock.txt``
pins every distribution the project needs, used by CI and by Binder.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import nbformat
import pytest
import yaml
from packaging.requirements import Requirement

import coursepkg
from coursepkg import _release, teaching

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
NOTEBOOKS = teaching.chapter_notebooks(ROOT)
LOCK = ROOT / _release.LOCK_FILE


def _normalised(source: str) -> str:
    return "\n".join(line.strip() for line in source.strip().splitlines())


def locked() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[name] = version
    return pins


def test_the_tag_is_the_packages_version():
    assert _release.TAG == f"v{coursepkg.__version__}"
    assert _release.install_requirement() == (
        f"coursepkg @ git+{_release.REPOSITORY_URL}@{_release.TAG}")


def test_the_config_names_the_repository_and_opens_the_release():
    assert CONFIG["repository"]["url"] == _release.REPOSITORY_URL
    assert CONFIG["repository"]["branch"] == _release.TAG, \
        "the launch buttons open the release's notebooks"


def test_contributing_quotes_the_releases_set_up_cell():
    text = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    match = re.search(r"\*\*Set-up cell\*\*.*?```python\n(.*?)```", text, re.DOTALL)
    assert match and _normalised(match.group(1)) == _normalised(_release.setup_cell_source())


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_chapter_installs_the_release_on_colab(path):
    nb = nbformat.read(ROOT / path, as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert first.source == _release.setup_cell_source(), (
        f"{path}: the set-up cell must install {_release.TAG}; run "
        "`python -m coursepkg._release --write-setup-cells && python -m coursepkg.teaching`")
    assert "@main" not in first.source


def test_the_instructors_colab_links_open_the_release():
    text = (ROOT / "book" / "instructors.md").read_text(encoding="utf-8")
    links = re.findall(r"https://colab\.research\.google\.com/\S+?\.ipynb", text)
    assert links and all(link == _release.colab_url(link.split(f"/{_release.TAG}/")[-1])
                         for link in links), links
    assert _release.REPOSITORY_URL in (ROOT / "book" / "intro.md").read_text(encoding="utf-8")


def test_the_lock_pins_every_dependency_at_a_version_pyproject_allows():
    pins = locked()
    assert {"torch", "torchvision", "jupyter-book", "numpy", "nbval"} <= set(pins)
    assert not any(n.startswith("nvidia-") or n == "triton" for n in pins), "CPU wheels only"
    assert all("+" not in v for v in pins.values()), "no local labels (+cu121): CPU wheels match"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    direct = project["dependencies"] + [
        r for extra in project["optional-dependencies"].values() for r in extra]
    for line in direct:
        req = Requirement(line)
        if req.name == "coursepkg":
            continue
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        assert name in pins, f"{name} is not pinned: run python -m coursepkg._release --lock"
        assert req.specifier.contains(pins[name], prereleases=True), (name, pins[name])


def test_ci_and_binder_install_under_the_lock():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert f'export PIP_CONSTRAINT="$PWD/{_release.LOCK_FILE}"' in ci
    env = yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert f"-c {_release.LOCK_FILE}" in pip
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert _release.LOCK_FILE in readme and "PIP_CONSTRAINT" in readme


def test_the_lock_is_computed_from_the_installed_requirements():
    pins = _release.locked_distributions()
    assert "torch" in pins and "jupyter-book" in pins and "coursepkg" not in pins
    assert all("+" not in v for v in pins.values())
    text = _release.lock_text()
    assert text.startswith("#") and "torch==" in text
