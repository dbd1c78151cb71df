"""The check of chapter 6's coding exercise (classifier and detector as one model): the
package's ``Detected`` and another valid extra logit pass; answers that decide wrongly or
cut the gradient fail with a hint instead of an exception."""

from __future__ import annotations

import pytest
import torch

from coursepkg.defences.detection import Detected
from coursepkg.exercises import check_detected
from exercise_verdicts import assert_fails

pytestmark = pytest.mark.slow  # loads the zoo's baseline and detector (then cached)


def joined(classifier, detector, threshold, x, *, gain=1.0, offset=0.0, with_max=True,
           step=False):
    """The joined logits with optional mistakes, for the tests."""
    logits = classifier(x)
    margin = detector(x) - threshold
    if step:  # the right decision, but no gradient through the detector
        margin = 1e3 * (2 * (margin > 0).float() - 1)
    base = logits.max(1).values if with_max else 0.0
    return torch.cat([logits, (base + gain * margin + offset)[:, None]], dim=1)


def test_the_package_and_the_reference_pass():
    assert check_detected(lambda c, d, t, x: Detected(c, d, t)(x)).passed
    verdict = check_detected(joined)
    assert verdict.passed, verdict
    assert "exactly where the detector fires" in verdict.message


def test_another_gain_passes():
    assert check_detected(lambda c, d, t, x: joined(c, d, t, x, gain=5.0)).passed


@pytest.mark.parametrize("mistake,words", [
    ({"with_max": False}, ("wrong on",)),
    ({"offset": 0.5}, ("wrong on", "where it does not")),  # fires a little early
    ({"gain": -1.0}, ("wrong on",)),
    ({"step": True}, ("gradient",)),
])
def test_close_but_wrong_models_fail_with_a_hint(mistake, words):
    assert_fails(check_detected(lambda c, d, t, x: joined(c, d, t, x, **mistake)), *words)


def test_bad_answers_fail_with_a_hint():
    assert_fails(check_detected(lambda c, d, t, x: c(x)), "shape")
    assert_fails(check_detected(lambda c, d, t, x: joined(c, d, t, x).tolist()), "tensor")
    assert_fails(check_detected(lambda c, d, t, x: joined(c, d, t, x) * 2), "classifier's")
    assert_fails(check_detected(lambda c, d, t, x: joined(c, d, t, x).detach()),
                 "no gradient")


def test_a_stub_or_a_non_function_fails_with_a_hint():
    def stub(classifier, detector, threshold, x):
        raise NotImplementedError

    assert_fails(check_detected(stub), "NotImplementedError")
    assert_fails(check_detected(None), "expected a function")
