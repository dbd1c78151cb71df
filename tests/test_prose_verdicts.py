"""The text is the run, for words: a sentence of a chapter's prose that uses a
result-dependent verdict word ("beyond the noise", "falls", "survives", ...) either takes the
verdict from the run (a myst-nb ``{glue:text}`` role in the sentence) or says that an assert
checks it ("asserted"), unless it is on the allow-list below with its reason (true by
definition, a published result, a conditional, an exercise's instruction).

Reads the chapters' source notebooks, so it needs no build.  Its companion for numbers is
``tests/test_prose_numbers.py``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb"))

#: Words whose truth depends on what a run measured.
VERDICT = re.compile(r"\b(beyond the noise|within the noise|claim stands|stands|holds|falls|fell"
                     r"|broken|no better than|survives|survived)\b", re.IGNORECASE)
#: What binds a sentence to the run: a glued value, or a stated assert.
BOUND = re.compile(r"\{glue|assert")

#: Sentences (a distinctive fragment of each) whose verdict word does not report this run.
ALLOWED: dict[str, dict[str, str]] = {
    "01_threat_models": {
        "what we measure is the share that survives": "the definition of robust accuracy",
        "the L∞ ball holds spread-out perturbations": "geometry of the two balls, not a measurement",
        "each image that survived the strong attack above": "an exercise's instruction",
        "Had the sweep broken many of them": "a conditional in an exercise's solution",
    },
    "02_augmentation": {
        "an example counts as robust only if it survives every one": "the definition of the strongest evaluation",
        "its accuracy fell from the claimed value": "published: Engstrom, Ilyas and Athalye 2018 (cited)",
        "A course about broken defences needs one that is not broken": "the chapter's framing, not a measurement",
    },
    "03_purification": {
        "An image counts as robust only if it survives every attack": "the definition of the worst case",
        "## What holds: a background": "a section title; the section's claims are asserted",
        "the output-space attack holds the context fixed": "describes the attack, not a result",
    },
    "04_gradient_regularisation": {
        "FGSM's success falls with it": "an exercise's solution: what the student's own sweep shows",
    },
    "05_randomness": {
        "Activation $j$ survives with probability": "the definition of SAP (tested in the unit tests)",
        "when one survives it is scaled up a lot": "the definition of SAP",
        "The expected picture is a curve that falls": "what EOT is expected to show; the run's curve is glued",
    },
    "06_detection": {
        "Where a detector still holds some images": "a rule of method, not a measurement",
    },
    "07_why_defending_is_hard": {
        "evaluating against an attacker who does not know the defence": "the chapter's plan",
        '("no better than undefended")': "the definition of a verdict the table prints",
        "That holds by construction": "true by construction, said so",
        "where the defender holds a guarantee": "a question, not a result",
        "The course's table holds every defence": "describes the table, not a result",
        "clean accuracy falls as the training": "an exercise's premise; asserted with the sweep",
    },
    "08_beyond": {
        "the certificate holds with probability": "the theorem's statement (Cohen et al. 2019)",
        "The bound holds whatever": "a mathematical fact",
        "Where the quick profile falls short": "a conditional",
        "It holds against every attacker": "what a certificate means, by definition",
    },
}


def sentences(markdown: str) -> list[str]:
    """The prose of a markdown cell, split into sentences (display maths left out)."""
    text = re.sub(r"\$\$.*?\$\$", " ", markdown, flags=re.DOTALL)
    parts = re.split(r"(?<=[.!?])\s+|\n\s*\n|\n(?=[-*] )", text)
    return [" ".join(p.split()) for p in parts if p.strip()]


def unbound_verdicts(notebook: dict) -> list[str]:
    """Sentences with a verdict word and neither a glue role nor a stated assert."""
    found = []
    for cell in notebook["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        for sentence in sentences("".join(cell["source"])):
            if VERDICT.search(sentence) and not BOUND.search(sentence):
                found.append(sentence)
    return found


@pytest.mark.parametrize("notebook", CHAPTERS, ids=lambda p: p.stem)
def test_every_verdict_word_is_glued_or_asserted(notebook):
    allowed = ALLOWED.get(notebook.stem, {})
    found = unbound_verdicts(json.loads(notebook.read_text(encoding="utf-8")))
    unexplained = [s for s in found if not any(fragment in s for fragment in allowed)]
    assert not unexplained, (
        f"{notebook.name}: verdict words the run does not bind: {unexplained}; glue the "
        "verdict from the run, say which assert checks it, or (true by definition, published) "
        "add the sentence to ALLOWED with its reason")
    stale = [f for f in allowed if not any(f in s for s in found)]
    assert not stale, f"{notebook.name}: ALLOWED entries that match no sentence any more: {stale}"


def test_the_check_catches_an_unbound_verdict_and_passes_a_glued_one():
    cell = {"cell_type": "markdown", "source": [
        "JPEG falls to the baseline's level. TV falls to {glue:text}`tv` in this run.\n\n",
        "Bit depth survives every attack (asserted). The sky is blue.",
    ]}
    assert unbound_verdicts({"cells": [cell]}) == ["JPEG falls to the baseline's level."]
    code = {"cell_type": "code", "source": ["# JPEG falls\n"]}
    assert unbound_verdicts({"cells": [code]}) == []
