"""The release a course pins: one place for the repository's address, the version, the tag.

A lecturer hands out one release of the book, not a moving branch.  Everything that names the
repository or the version is read from, or checked against, this module
(``tests/test_release.py``):

* ``_config.yml``: ``repository.url`` is :data:`REPOSITORY_URL` and ``repository.branch``
  (the ref the launch buttons open) is :data:`TAG`;
* every chapter's set-up cell is :func:`setup_cell_source`: on Colab it installs
  ``coursepkg`` from :data:`TAG`, never from ``main`` (``CONTRIBUTING.md`` quotes it);
* ``README.md`` and the instructors' page link the same repository;
* ``requirements-lock.txt`` (:data:`LOCK_FILE`) pins the exact versions the book was last
  built and tested with; CI and ``environment.yml`` (Binder) install under it.

Releasing version X.Y.Z: set ``__version__`` in ``coursepkg/__init__.py``, run
``python -m coursepkg._release --write-setup-cells`` and ``python -m coursepkg.teaching``
(the chapters' set-up cells and the student copies now install ``vX.Y.Z``), set
``repository.branch: vX.Y.Z`` in ``_config.yml``, run ``python -m coursepkg._release
--lock`` in the environment CI tested, commit, and tag that commit ``vX.Y.Z``
(``git tag vX.Y.Z && git push --tags``).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from . import __version__

#: The course's repository on GitHub (owner/name).
REPOSITORY = "adversarial-defences-course/course"
REPOSITORY_URL = f"https://github.com/{REPOSITORY}"
VERSION = __version__
#: The git tag of this release: Colab installs it, the launch buttons open it.
TAG = f"v{VERSION}"
#: The constraints file of the versions the book was tested with (repository root).
LOCK_FILE = "requirements-lock.txt"
#: The extra whose dependencies (and theirs) the lock file pins.
LOCKED_EXTRA = "test"
#: Distributions never pinned: CUDA builds of PyTorch's dependencies (the lock is for the CPU
#: wheels of download.pytorch.org/whl/cpu; a GPU machine resolves its own), and pip's own.
_UNPINNED = re.compile(r"^(nvidia-.*|triton|cuda-.*|pip|setuptools|wheel)$")


def install_requirement(ref: str = TAG) -> str:
    """The pip requirement of ``coursepkg`` at ``ref``: ``coursepkg @ git+<url>@<ref>``."""
    return f"coursepkg @ git+{REPOSITORY_URL}@{ref}"


def setup_cell_source(ref: str = TAG) -> str:
    """The first code cell of every chapter (tagged ``remove-cell``)."""
    return ("# Set-up: on Colab, install the course's package at the book's version; elsewhere, "
            "nothing.\n"
            "import sys\n"
            'if "google.colab" in sys.modules:\n'
            f'    %pip install -q "{install_requirement(ref)}"')


def colab_url(notebook: str, ref: str = TAG) -> str:
    """The Colab address of ``notebook`` (a path in the repository) at ``ref``."""
    return f"https://colab.research.google.com/github/{REPOSITORY}/blob/{ref}/{notebook}"


# --------------------------------------------------------------------------------------------
# The lock file
# --------------------------------------------------------------------------------------------


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_distributions(extra: str = LOCKED_EXTRA) -> dict[str, str]:
    """``{name: version}`` of every installed distribution ``coursepkg[extra]`` needs.

    The closure of the requirements of ``coursepkg`` with ``extra``, following each
    distribution's own requirements (their environment markers evaluated here, extras
    followed), as installed in this environment.  PyTorch's version loses its local label
    (``2.4.1+cu121`` -> ``2.4.1``), so the CPU wheel of the same version satisfies it.
    """
    from importlib import metadata

    from packaging.requirements import Requirement

    found: dict[str, str] = {}
    todo: list[tuple[str, frozenset[str]]] = [("coursepkg", frozenset({extra}))]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, extras = todo.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        if name != "coursepkg":
            found[_canonical(dist.metadata["Name"])] = dist.version.split("+")[0]
        for line in dist.requires or []:
            req = Requirement(line)
            environments = [{"extra": e} for e in extras] or [{"extra": ""}]
            if req.marker is not None and not any(req.marker.evaluate(env)
                                                  for env in environments):
                continue
            todo.append((_canonical(req.name), frozenset(req.extras)))
    return {n: v for n, v in sorted(found.items()) if not _UNPINNED.match(n)}


def lock_text(extra: str = LOCKED_EXTRA) -> str:
    """The text of :data:`LOCK_FILE` for this environment."""
    import platform

    lines = [
        "# The exact versions the book was last built and tested with (CI: the README's test",
        "# command, with PIP_CONSTRAINT set to this file).  Written by",
        "#   python -m coursepkg._release --lock",
        f"# on Python {platform.python_version()}; PyTorch from the CPU wheels "
        "(https://download.pytorch.org/whl/cpu).",
        "# A constraints file: it pins versions, it installs nothing by itself.  Use it with",
        "#   pip install -c requirements-lock.txt -e \".[book]\"",
        "# and drop it (leave out -c / PIP_CONSTRAINT) to take the newest versions instead.",
    ]
    lines += [f"{name}=={version}" for name, version in locked_distributions(extra).items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coursepkg._release",
                                     description="The release's tag, lock file and set-up cells.")
    parser.add_argument("--root", type=Path, default=Path("."), help="the repository root")
    parser.add_argument("--lock", action="store_true",
                        help=f"write {LOCK_FILE} from this environment")
    parser.add_argument("--write-setup-cells", action="store_true",
                        help="rewrite every chapter's set-up cell to install this release")
    args = parser.parse_args(argv)
    if args.lock:
        (args.root / LOCK_FILE).write_text(lock_text(), encoding="utf-8")
        print(f"wrote {args.root / LOCK_FILE}")
    if args.write_setup_cells:
        import nbformat

        from . import teaching

        for rel in teaching.chapter_notebooks(args.root):
            nb = nbformat.read(args.root / rel, as_version=4)
            cell = next(c for c in nb.cells if c.cell_type == "code")
            if cell.source != setup_cell_source():
                cell.source = setup_cell_source()
                nbformat.write(nb, args.root / rel)
                print(f"rewrote the set-up cell of {rel}")
    if not (args.lock or args.write_setup_cells):
        print(f"{REPOSITORY_URL} {TAG}: {install_requirement()}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
