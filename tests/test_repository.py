"""The repository's promises about itself: CI runs the README's test command, notebooks carry no outputs."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return [line.strip() for line in re.findall(r"```bash\n(.*?)```", text, flags=re.S)
            for line in line.splitlines() if line.strip().startswith("pip install -e")]


def test_readme_gives_exactly_two_setup_commands():
    commands = readme_commands()
    assert len(commands) == 2, commands
    assert "jupyter-book build" in commands[0] and ".[book]" in commands[0]
    assert "pytest" in commands[1] and "--nbval-lax" in commands[1]


def test_ci_runs_the_readme_test_command_verbatim():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert readme_commands()[1] in [line.strip() for line in ci]


def test_build_commands_rebuild_every_page():
    """Sphinx keeps its environment between builds: without ``--all`` a build after a failed
    one exits 0 without executing the notebook that failed."""
    for command in readme_commands():
        assert "jupyter-book build . --all" in command, command


def test_readme_activates_the_conda_environment_that_environment_yml_creates():
    name = re.search(r"^name:\s*(\S+)", (ROOT / "environment.yml").read_text(), flags=re.M).group(1)
    activations = re.findall(r"conda activate (\S+?)`", (ROOT / "README.md").read_text())
    assert activations and set(activations) == {name}, (activations, name)


def test_top_level_layout():
    for name in ("book", "coursepkg", "tests", "_config.yml", "_toc.yml", "environment.yml",
                 "README.md", "pyproject.toml", ".ci/run"):
        assert (ROOT / name).exists(), name


def test_notebooks_are_stored_without_outputs():
    for path in sorted((ROOT / "book").glob("**/*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        for cell in cells:
            if cell["cell_type"] == "code":
                assert not cell.get("outputs") and cell.get("execution_count") is None, path.name
