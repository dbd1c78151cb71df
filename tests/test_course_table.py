"""coursepkg.course_table: the registry of the book's defences and the evaluation of a row."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from coursepkg import attacks, zoo
from coursepkg import course_table as ct
from coursepkg.evaluate import Interval
from coursepkg.models import classifier_for

#: the defences each chapter builds and evaluates (read off the chapters' code cells)
EXPECTED = {
    2: {"FGSM training", "fast FGSM training", "PGD training", "ALP", "TRADES"},
    3: {"JPEG", "bit depth (2 bits)", "bit depth (1 bit)", "TV minimisation", "PixelDefend"},
    4: {"contractive penalty", "input-gradient penalty", "distillation (T = 100)"},
    5: {"SAP", "random resize and pad"},
    6: {"detector network", "detector network (dynamic)", "kernel density",
        "Bayesian uncertainty", "density + uncertainty (LR)"},
}


def test_the_registry_covers_every_defence_of_chapters_2_to_6_once():
    names = [d.name for d in ct.DEFENCES]
    assert len(names) == len(set(names))
    by_chapter = {}
    for d in ct.DEFENCES:
        by_chapter.setdefault(d.chapter, set()).add(d.name)
    assert by_chapter == EXPECTED
    assert [d.chapter for d in ct.DEFENCES] == sorted(d.chapter for d in ct.DEFENCES)


def test_every_defence_is_well_formed():
    for d in ct.DEFENCES:
        assert d.kind in ct.KINDS
        assert callable(d.build) and callable(d.claim) and callable(d.attacks)
        assert d.claim_name
        if d.with_strongest:  # only chapters whose figure is strongest(extra=...)
            assert d.chapter in (2, 4) or d.strongest_via is not None
    assert ct.defence("PGD training").chapter == 2
    with pytest.raises(ValueError, match="choose one of"):
        ct.defence("no such defence")
    with pytest.raises(ValueError, match="kind must be one of"):
        dataclasses.replace(ct.DEFENCES[0], kind="magic")


def test_transfer_sources_are_zoo_recipes_with_valid_hyperparameters():
    known = zoo.recipes()
    labels = [label for _, _, label in ct.TRANSFER_SOURCES]
    assert len(labels) == len(set(labels))
    for recipe, hp, _ in ct.TRANSFER_SOURCES:
        assert recipe in known
        zoo.configuration(recipe, **hp)  # raises on an unknown hyperparameter
    # detectors and the PixelCNN are not classifiers; everything else the zoo trains is
    classifiers = {r for r in known if r not in ("pixelcnn", "detector-network", "feinman-lr",
                                                 "rfgsm_training", "pgd_training_eps")}
    assert classifiers <= {r for r, _, _ in ct.TRANSFER_SOURCES}
    for d in ct.DEFENCES:  # a defended network names its own row among the sources
        assert d.network == "" or d.network in labels, d.name
        # every defence names the zoo network it is or wraps, and a network is its own
        assert d.classifier in labels, d.name
        assert d.network == "" or d.classifier == d.network, d.name


def test_grey_box_cells_are_the_targets_that_wrap_a_source():
    labels = [label for _, _, label in ct.TRANSFER_SOURCES]
    targets = [d.name for d in ct.DEFENCES]
    grey = ct.grey_box_cells(labels, targets)
    assert len(grey) == len(targets)  # each target shares exactly one source's network
    assert ("standard", "bit depth (2 bits)") in grey  # a purifier wraps the baseline
    assert ("standard", "SAP") in grey and ("standard", "detector network") in grey
    assert ("standard, dropout", "kernel density") in grey  # Feinman's classifier
    assert ("PGD training", "PGD training") in grey
    assert ("standard", "PGD training") not in grey
    assert ct.grey_box_cells(["standard"], ["not a defence"]) == set()
    with pytest.raises(ValueError, match="the network itself"):
        dataclasses.replace(ct.defence("PGD training"), classifier="standard")


def _first(k: int, n: int) -> torch.Tensor:
    mask = torch.zeros(n, dtype=torch.bool)
    mask[:k] = True
    return mask


def _row(claimed, chapter, adaptive, failed=None, masked=None, n=50, baseline=None):
    """A row whose claimed images are the first ``claimed``, its adaptive ones the first
    ``adaptive`` (a subset: the adaptive attacks include the claimed one), and the
    baseline's the first ``baseline``."""
    iv = lambda k: Interval.of(k, n)
    masks = {"claimed": _first(claimed, n), "adaptive": _first(adaptive, n)}
    if baseline is not None:
        masks["baseline"] = _first(baseline, n)
    return ct.Row("d", 2, "model", n, iv(min(45, n)), iv(claimed), "PGD", iv(chapter),
                  iv(chapter), iv(adaptive), failed, masked, 0.0, correct=masks)


def test_verdicts_come_from_paired_tests():
    seven = _row(14, 7, 7, n=30)  # 0.467 -> 0.233: seven images broken, none the other way
    assert seven.broken and seven.claim_test.p_value == pytest.approx(2 ** -7)
    assert seven.verdict.startswith("claim lowered (7 of 30 images, p = 0.0078)")
    four = _row(10, 6, 6)  # four broken: p = 1/16, not below 0.05
    assert not four.broken
    assert four.verdict.startswith("claim lowered on 4 of 50 images, within chance (p = 0.062)")
    same = _row(10, 10, 10)
    assert same.verdict.startswith("claim not lowered by the attacks run")
    for row in (seven, four, same, _row(3, 3, 3, n=6)):
        assert "stands" not in row.verdict and "unresolved" not in row.verdict


def test_verdict_compares_with_the_undefended_baseline():
    above = _row(40, 20, 20, baseline=10)  # ten images more than the baseline, none fewer
    assert above.above_baseline and "above undefended (+10/-0 images, p = 0.00098)" in above.verdict
    close = _row(40, 12, 12, baseline=10)  # two more: p = 1/4
    assert close.above_baseline is False and "no better than undefended" in close.verdict
    assert _row(40, 12, 12).above_baseline is None  # no baseline given: no comparison


def test_verdict_and_defect():
    assert "masking signs: 1" in _row(40, 10, 10, failed=["white-box beats random noise"]).verdict
    effort = ["more steps and restarts change little"]
    assert "masking signs" not in _row(40, 10, 10, failed=effort).verdict
    assert "gradient looks masked" in _row(40, 10, 10, masked=True).verdict
    assert "not applicable" in _row(40, 10, 10).verdict
    assert not _row(40, 11, 10).defect  # 2 points: within the rule
    assert _row(40, 12, 10).defect and "DEFECT" in _row(40, 12, 10).verdict
    assert set(_row(40, 10, 10).as_dict()) >= {"defence", "clean", "claimed", "chapter",
                                                "strongest", "strongest is", "adaptive", "verdict"}


def _toy_defence(**changes):
    def build(s):
        torch.manual_seed(3)
        model = classifier_for(s.info, width=4).to(s.device).eval()
        for p in model.parameters():
            p.requires_grad_(False)
        return model
    base = ct.Defence("toy", chapter=2, kind="model", claim_name="FGSM", build=build,
                      claim=lambda s, m: {"FGSM": attacks.fgsm},
                      attacks=lambda s, m, *images: {"R+FGSM": attacks.rfgsm})
    return dataclasses.replace(base, **changes)


@pytest.mark.parametrize("with_strongest", [False, True])
def test_a_row_is_the_per_example_worst_case(with_strongest):
    s = ct.Setting(profile="quick", device="cpu")
    row = ct.evaluate_defence(_toy_defence(with_strongest=with_strongest), s, n=12)
    m = row.correct
    assert torch.equal(m["adaptive"], m["chapter"] & m["strongest"])
    for key in ("claimed", "chapter", "strongest"):
        assert not (m[key] & ~m["clean"]).any(), key  # never correct after attack if not clean
    assert row.adaptive.value <= min(row.chapter_figure.value, row.strongest.value)
    assert row.n == 12 and row.failed_checks is None and row.masked is not None
    if with_strongest:  # the chapter's figure is strongest(extra=...): a subset of strongest
        assert not (m["chapter"] & ~m["strongest"]).any()


def test_transferred_examples_are_crafted_once_and_reused():
    s = ct.Setting(profile="quick", device="cpu")
    x, y = s.images(6)
    attack = s.transferred(steps=2)
    torch.manual_seed(0)
    first = attack(None, x, y, eps=0.1)  # the model handed over is ignored: transfer
    assert (first - x).abs().max() <= 0.1 + 1e-6 and first.min() >= 0 and first.max() <= 1
    again = s.transferred(steps=2)(None, x[2:5], y[2:5], eps=0.1)  # same setting: cached
    assert torch.equal(again, first[2:5])
    other = s.transferred(steps=3)(None, x[:1], y[:1], eps=0.1)  # other settings: crafted anew
    assert other.shape == x[:1].shape
    with pytest.raises(TypeError, match="only eps"):
        attack(None, x, y, eps=0.1, steps=5)


@pytest.mark.slow
def test_chapter_rows_read_the_chapters_own_results_back(monkeypatch):
    """A chapter-2 row asks exactly what chapter 2 asked (the same models, images, attacks
    and seed), so the table reads the chapter's per-image results back instead of
    attacking again, and its figure is the chapter's."""
    from coursepkg import evaluate, zoo
    from coursepkg.evaluate import store
    from coursepkg.recipes import augmentation as chapter2

    monkeypatch.setenv(store.STORE_ENV, "on")
    s = ct.Setting(profile="quick", device="cpu")
    x, y = s.images(16)
    model = zoo.get("fgsm_training", profile="quick", device="cpu")
    own = chapter2.chapter_attacks(zoo.get("standard", profile="quick", device="cpu"), x, y,
                                   eps=s.eps, profile=s.profile)
    chapter = evaluate.strongest(model, x, y, eps=s.eps, extra=own)  # as the chapter asks
    hits = []
    real_record = store.record
    monkeypatch.setattr(store, "record", lambda kind, names, n, sec, hit: (
        hits.append((kind, n, hit)), real_record(kind, names, n, sec, hit)))
    row = ct.evaluate_defence(ct.defence("FGSM training"), s, n=16)
    assert ("robust_accuracy", 16, True) in hits  # strongest(extra=...) read back
    assert torch.equal(row.correct["chapter"], chapter.correct)
    assert row.chapter_figure.value == chapter.robust_accuracy
    names = list(chapter.per_attack)  # the built-in attacks, then the chapter's (FGSM first)
    last_builtin = names[names.index("FGSM") - 1]
    assert torch.equal(row.correct["strongest"], chapter.per_attack_mask[last_builtin])


@pytest.mark.slow
def test_purifier_rows_read_chapter_3s_worst_case_back(monkeypatch):
    """A chapter-3 row makes chapter 3's own call (recipes.purification.worst_case) on the
    same images: the table's masks are the chapter's, read back from the results store."""
    from coursepkg.defences.purification import BitDepth
    from coursepkg.evaluate import store
    from coursepkg.recipes import purification as chapter3

    monkeypatch.setenv(store.STORE_ENV, "on")
    s = ct.Setting(profile="quick", device="cpu")
    x, y = s.images(8)
    own, correct = chapter3.worst_case(s.classifier, BitDepth(bits=2), x, y, eps=s.eps,
                                       profile=s.profile)  # as the chapter asks
    hits = []
    real_record = store.record
    monkeypatch.setattr(store, "record", lambda kind, names, n, sec, hit: (
        hits.append((kind, n, hit)), real_record(kind, names, n, sec, hit)))
    row = ct.evaluate_defence(ct.defence("bit depth (2 bits)"), s, n=8, checklist_n=2)
    assert ("robust_accuracy", 8, True) in hits
    assert torch.equal(row.correct["chapter"], correct)
    assert torch.equal(row.correct["claimed"], own.per_attack_mask["transferred PGD"])
