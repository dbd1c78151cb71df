"""Evaluate your own defence: ``python -m coursepkg.report`` and :func:`~coursepkg.report.evaluate_model`.

The course's evaluation, run on a model the course did not build -- a student's defence, a
project's, a paper's -- and written up as one self-contained HTML page (with the same
content as Markdown and JSON)::

    python -m coursepkg.report mypackage.models:build_defended --dataset fashion-mnist --eps 0.1
    python -m coursepkg.report defended.pt --data my_images.pt --eps 0.1 --random --out report/

From Python, :func:`~coursepkg.report.evaluate_model` returns the same content as a
:class:`~coursepkg.report.ModelReport`.  What the report runs, and why, is in
:mod:`coursepkg.report.core`; how the model and the images are read, in
:mod:`coursepkg.report.loading`; the three formats, in :mod:`coursepkg.report.render`.
"""

from .core import ModelReport, evaluate_model
from .loading import course_images, load_data, load_model
from .render import to_html, to_json, to_markdown, write_report

__all__ = ["ModelReport", "evaluate_model", "load_model", "load_data", "course_images", "to_html",
           "to_markdown", "to_json", "write_report", "main"]


def main(argv: list[str] | None = None) -> int:
    """The command line (``python -m coursepkg.report --help``); returns the exit status."""
    from .__main__ import main as _main

    return _main(argv)
