"""The intro's promise, checked: every accuracy-like number in a chapter's prose was printed by
the run (or is written in its code, or is a cited published figure on the allow-list).

Reads the executed notebooks the book build leaves in ``_build/jupyter_execute/book/``; run
after ``jupyter-book build . --all -W -n --keep-going`` (the README's test command does).
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXECUTED = ROOT / "_build" / "jupyter_execute" / "book"
CHAPTERS = sorted(p for p in (ROOT / "book").glob("[0-9][0-9]_*.ipynb"))

#: Numbers in prose that no cell prints, each with its reason: published figures (cited in
#: the same sentence) and arithmetic the prose itself carries out.
ALLOWED: dict[str, dict[str, str]] = {
    "05_randomness": {
        "14%": "arithmetic in the sentence: 32/28, the canvas's growth",
        "11%": "arithmetic in the sentence: 331/299, the paper's canvas growth",
        "60%": "arithmetic in Exercise 3's solution, on a hypothetical model",
        "70%": "arithmetic in Exercise 3's solution, on a hypothetical model",
        "83%": "arithmetic in Exercise 3's solution, on a hypothetical model",
    },
    "06_detection": {
        "20%": "a false-positive rate an exercise proposes, not a measurement",
        "92.6%": "published: Feinman et al. 2017's ROC-AUC on MNIST (cited)",
        "85.5%": "published: the same on CIFAR-10, Feinman et al. 2017 (cited)",
    },
    "03_purification": {
        "9%": "published: PixelDefend under BPDA on CIFAR-10, Athalye et al. 2018 (cited)",
        "0%": "published: Guo et al.'s transformations under BPDA, Athalye et al. 2018 (cited)",
    },
    "08_beyond": {
        "86%": "published: IBP training's clean accuracy, Song, Shokri and Mittal 2019 (cited)",
        "78%": "published: IBP training under PGD, Song, Shokri and Mittal 2019 (cited)",
    },
    "02_augmentation": {
        "90.88%": "published: PGD training's clean accuracy, Song, Shokri and Mittal 2019 (cited)",
        "68.06%": "published: PGD training under PGD, Song, Shokri and Mittal 2019 (cited)",
        "90.92%": "published: TRADES' clean accuracy, Song, Shokri and Mittal 2019 (cited)",
        "72.40%": "published: TRADES under PGD, Song, Shokri and Mittal 2019 (cited)",
        "95%": "the confidence level of every interval, not a measurement",
    },
}

#: Allowed in every chapter: levels and conventions, not measurements.
ALLOWED_EVERYWHERE = {"95%": "the confidence level of every interval"}

NUMBER = re.compile(r"(?<![\w.])(?:0\.\d{2,3}|\d{1,3}(?:\.\d+)?\s?%)(?![\w])")


def prose(markdown: str) -> str:
    """Markdown without what is not prose: maths, code, roles, links, admonition headers."""
    text = re.sub(r"\$\$.*?\$\$", " ", markdown, flags=re.S)
    text = re.sub(r"\$[^$]*\$", " ", text)
    text = re.sub(r"```.*?\n", "\n", text)  # fence lines (the body of admonitions is prose)
    text = re.sub(r"`[^`]*`", " ", text)
    text = re.sub(r"\]\([^)]*\)", "]", text)
    return text


def printed_text(cell: dict) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if "text" in out:
            parts.append("".join(out["text"]))
        for kind, value in out.get("data", {}).items():
            if kind.startswith("text/"):
                parts.append(html.unescape(re.sub(r"<[^>]+>", " ", "".join(value))))
    return "\n".join(parts)


def forms(number: str) -> set[str]:
    """The ways a run could have printed ``number`` (0.61 <-> 61%, 0.610, 61.0%)."""
    n = number.replace(" ", "")
    out = {n}
    if n.endswith("%"):
        value = float(n[:-1]) / 100
        out |= {f"{value:.2f}", f"{value:.3f}", f"{value * 100:.0f}%", f"{value * 100:.1f}%"}
    else:
        value = float(n)
        out |= {f"{value * 100:.0f}%", f"{value * 100:.1f}%", f"{value:.3f}", f"{value:.2f}"}
    return out


def unprinted_numbers(executed: dict, chapter: str) -> list[str]:
    cells = executed["cells"]
    printed = "\n".join(printed_text(c) for c in cells if c["cell_type"] == "code")
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    allowed = {**ALLOWED_EVERYWHERE, **ALLOWED.get(chapter, {})}
    missing = []
    for cell in cells:
        if cell["cell_type"] != "markdown":
            continue
        for number in NUMBER.findall(prose("".join(cell["source"]))):
            key = number.replace(" ", "")
            if key in allowed or any(f in printed or f in code for f in forms(key)):
                continue
            missing.append(key)
    return sorted(set(missing))


@pytest.mark.parametrize("notebook", CHAPTERS, ids=lambda p: p.stem)
def test_every_number_in_the_prose_is_printed_by_the_run(notebook):
    executed = EXECUTED / notebook.name
    if not executed.exists():
        pytest.skip(f"no executed copy at {executed}: build the book first")
    missing = unprinted_numbers(json.loads(executed.read_text()), notebook.stem)
    assert not missing, (
        f"{notebook.name}: numbers in the prose that no cell prints: {missing}; print them, "
        f"state them as asserted bounds in words, or (published figures) add them to ALLOWED"
    )


def test_the_checker_catches_a_typed_number():
    fake = {"cells": [
        {"cell_type": "markdown", "source": ["PGD leaves 0.61 of the images; noise 0.85."]},
        {"cell_type": "code", "source": ["print(acc)"], "outputs": [{"text": ["0.610\n"]}]},
    ]}
    assert unprinted_numbers(fake, "xx") == ["0.85"]
