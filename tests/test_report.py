"""``python -m coursepkg.report``: the report agrees with the course's evaluation, catches a
masked and a cheating model, rejects bad input in one line, and writes its three files.

Budgets are tiny (``SMALL``: a few attack steps) and the images few (40), so the fast tests
run in seconds; the results store is switched off so that every comparison recomputes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from coursepkg import config, report, zoo
from coursepkg.evaluate import strongest
from coursepkg.report.core import TRANSFER_NAME, evaluate_model

N = 40
SMALL_OVERRIDES = ("apgd_steps=5,apgd_restarts=1,apgd_targets=2,pgd_steps=5,pgd_restarts=1,"
                   "spsa_iters=3,spsa_samples=4,expensive_eval_subset=20,random_eval_draws=4,"
                   "eot_samples=2,eval_subset=40")
SMALL = config.apply_overrides(config.profile("quick"), SMALL_OVERRIDES)


@pytest.fixture(autouse=True)
def _no_results_store(monkeypatch):
    monkeypatch.setenv("COURSEPKG_RESULTS_STORE", "off")  # every evaluation recomputes
    monkeypatch.setenv("COURSEPKG_DEVICE", "cpu")


def tiny_model(seed: int = 0, classes: int = 10, channels: int = 1) -> nn.Module:
    """An untrained, seeded linear classifier on 28 x 28 images (a stand-in for 'your model')."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(channels * 28 * 28, classes)).eval()


def random_images(n: int = N, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def labelled_by(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Labels the model gets right (its own predictions): clean accuracy 1 by construction."""
    with torch.no_grad():
        return model(x).argmax(1)


class LabelOnly(nn.Module):
    """One-hot logits of ``model``'s argmax: the decisions of ``model``, zero input gradient."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        logits = self.model(x)
        hard = F.one_hot(logits.argmax(1), logits.shape[1]).to(logits) * 10.0
        return hard + 0.0 * logits  # a path for autograd whose gradient is exactly zero


class Lookup(nn.Module):
    """Right on every image within eps (L∞) of a stored test image, by looking its label up.

    The stored images are the test images themselves: the model knows the answers.  Off
    them it answers class 0.  Its gradient is zero everywhere.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, eps: float, classes: int = 10):
        super().__init__()
        self.register_buffer("keys", x.flatten(1).clone())
        self.register_buffer("labels", y.clone())
        self.register_buffer("zero_weight", torch.zeros(x[0].numel(), classes))
        self.eps, self.classes = eps, classes

    def forward(self, x):
        rows = []
        for chunk in x.flatten(1).split(256):
            dist = (chunk[:, None, :] - self.keys[None]).abs().amax(-1)
            near, idx = dist.min(1)
            label = torch.where(near <= self.eps + 1e-6, self.labels[idx], torch.zeros_like(idx))
            rows.append(F.one_hot(label, self.classes).float() * 10.0)
        # a zero-weight linear path: gradient exactly zero, and a dense tensor (an expanded
        # zero gradient, as from 0 * x.sum(), trips the in-place sign_ of attacks.pgd)
        return torch.cat(rows) + x.flatten(1) @ self.zero_weight


def course_model_and_images():
    """The zoo's standard Fashion-MNIST model when cached, else a tiny seeded one trained here."""
    from coursepkg.data import DatasetNotFoundError

    try:
        x, y = report.course_images("fashion-mnist", N, profile=SMALL)
    except DatasetNotFoundError as err:
        pytest.skip(f"Fashion-MNIST not available: {err}")
    if zoo.cached("standard", "fashion-mnist", SMALL):
        return zoo.get("standard", "fashion-mnist", SMALL, device="cpu"), x, y
    from coursepkg.data import load_dataset, subset
    from coursepkg.models import SmallCNN
    from coursepkg.train import train

    xt, yt = subset(*load_dataset("fashion-mnist", "train"), 2000)
    torch.manual_seed(0)
    model = SmallCNN("fashion-mnist", width=8, hidden=32)
    train(model, xt, yt, epochs=1, seed=0, device="cpu", progress=False)
    return model.eval(), x, y


# --------------------------------------------------------------------------------------
# The report agrees with the course's evaluation
# --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_report_agrees_with_strongest_image_by_image():
    model, x, y = course_model_and_images()
    r = evaluate_model(model, x, y, eps=0.1, profile=SMALL, dataset="fashion-mnist", baseline=False,
                       progress=False)
    torch.manual_seed(0)
    direct = strongest(model, x, y, eps=0.1, profile=SMALL)
    assert not r.masked, r.flags
    assert torch.equal(r.correct, direct.correct.cpu()), "the report's per-image worst case differs"
    assert r.worst_case == direct.robust_interval
    assert r.budgets["apgd_steps"] == SMALL.apgd_steps and r.budgets["pgd_steps"] == SMALL.pgd_steps
    assert r.clean.value == pytest.approx(direct.clean_accuracy)
    broken = {a: sum(1 for f in direct.fooled_by if f == a) for a in direct.per_attack}
    assert r.fooled_by == {a: k for a, k in broken.items() if k}
    assert sum(r.fooled_by.values()) == round(direct.clean_accuracy * N) - int(direct.correct.sum())
    # accuracy against eps starts at the clean accuracy and never rises by more than two images
    acc = r.curve["accuracy"]
    assert acc[0] == pytest.approx(direct.clean_accuracy)
    assert all(b <= a + 2 / N for a, b in zip(acc, acc[1:])), acc
    assert [c["name"] for c in r.checks][:4] == ["iterative beats single-step", "larger eps lowers accuracy",
                                                 "unbounded attack reaches near-zero accuracy",
                                                 "white-box beats random noise"]
    assert all(c["meaning"] for c in r.checks)
    for word in ("robust", "stands", "real"):
        assert word not in r.verdict.lower(), r.verdict
    assert "not lowered by the attacks run" in r.verdict


@pytest.mark.slow
def test_paired_comparison_with_the_baseline_on_the_same_images():
    base = tiny_model(0)
    x = random_images()
    y = labelled_by(base, x)
    r = evaluate_model(base, x, y, eps=0.05, profile=SMALL, baseline=base, progress=False)
    b = r.baseline
    assert b["model_only"] == 0 and b["baseline_only"] == 0  # the same model: no discordant image
    assert b["p_greater"] == 1.0 and not b["above"] and "no better than undefended" in r.verdict


def test_sign_test_counts_and_p_values():
    from scipy.stats import binomtest

    from coursepkg.report.core import _paired

    mine = torch.tensor([True] * 9 + [False] * 1 + [True] * 5 + [False] * 5)
    theirs = torch.tensor([False] * 9 + [True] * 1 + [True] * 5 + [False] * 5)
    out = _paired(mine, theirs)
    assert (out["model_only"], out["baseline_only"], out["both"], out["neither"]) == (9, 1, 5, 5)
    assert out["p_greater"] == pytest.approx(11 / 1024)  # P(X >= 9), X ~ Binomial(10, 1/2)
    assert out["p_two_sided"] == pytest.approx(binomtest(9, 10).pvalue)
    assert _paired(theirs, mine)["p_greater"] > 0.95


# --------------------------------------------------------------------------------------
# A masked model and a cheating model
# --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_label_only_model_is_flagged_and_broken_by_transfer():
    base = tiny_model(1)
    x = random_images(seed=1)
    y = labelled_by(base, x)
    masked = LabelOnly(base)
    r = evaluate_model(masked, x, y, eps=0.1, profile=SMALL, baseline=base, progress=False)
    assert r.masked and r.flags["zero_share"] == 1.0
    assert "SPSA" in r.attacks and TRANSFER_NAME in r.attacks
    assert r.fooled_by.get(TRANSFER_NAME, 0) > N // 2, r.fooled_by
    assert r.worst_case.value < 0.5 and r.clean.value == 1.0
    assert "gradients look masked" in r.verdict or r.failed_checks


@pytest.mark.slow
def test_the_defences_own_attacks_join_the_worst_case():
    from coursepkg.adaptive import attack_via
    from coursepkg.attacks import pgd

    base = tiny_model(5)
    x = random_images(20, seed=5)
    y = labelled_by(base, x)
    bpda = {"BPDA (through the classifier)": attack_via(base, pgd, steps=5)}
    r = evaluate_model(LabelOnly(base), x, y, eps=0.1, profile=SMALL, baseline=False, extra=bpda,
                       checklist_n=8, progress=False)
    assert r.attacks[-1] == "BPDA (through the classifier)" and TRANSFER_NAME not in r.attacks
    assert r.fooled_by.get("BPDA (through the classifier)", 0) > 0, r.fooled_by
    assert r.checklist_n == 8
    _one_line_error(lambda: evaluate_model(base, x, y, eps=0.1, extra={"SPSA": pgd}, progress=False),
                    "the report's own")


@pytest.mark.slow
def test_a_model_right_by_construction_fails_the_checklist():
    x = torch.rand(N, 1, 8, 8, generator=torch.Generator().manual_seed(2))  # small images: a cheap lookup
    y = torch.randint(0, 10, (N,), generator=torch.Generator().manual_seed(2))
    cheat = Lookup(x, y, eps=0.1)
    r = evaluate_model(cheat, x, y, eps=0.1, profile=SMALL, baseline=False, progress=False)
    assert r.clean.value == 1.0 and r.worst_case.value == 1.0  # no attack lowers it ...
    assert r.masked  # ... but the flags fire
    assert not r.checklist_passed and "white-box beats random noise" in r.failed_checks, r.checks
    assert "the checklist failed" in r.verdict


@pytest.mark.slow
def test_random_model_is_judged_over_k_draws_through_eot():
    class Noisy(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = tiny_model(3)

        def forward(self, x):
            return self.model((x + 0.2 * torch.randn_like(x)).clamp(0, 1))

    x = random_images(20, seed=3)
    y = labelled_by(tiny_model(3), x)
    r = evaluate_model(Noisy(), x, y, eps=0.05, profile=SMALL, random=True, baseline=False, progress=False)
    assert r.randomised["k"] == SMALL.random_eval_draws and r.randomised["eot_samples"] == SMALL.eot_samples
    assert r.attacks[:4] == ["EOT APGD-CE", "EOT APGD-DLR-T", "EOT PGD-CE", "EOT PGD-margin"], r.attacks
    assert all(a.startswith(("EOT ", "one-draw ")) or a == "SPSA" for a in r.attacks), r.attacks
    assert r.masked and r.flags["mean_cosine"] < 0.99  # two passes, two draws: the gradients disagree
    assert r.worst_case.value == r.randomised["attacked_worst"].value
    assert r.randomised["attacked_worst"].value <= r.randomised["attacked_majority"].value
    assert r.clean.value == r.randomised["clean_worst"].value <= r.randomised["clean_majority"].value


@pytest.mark.slow
def test_l2_report_skips_the_linf_checklist_and_says_so():
    model = tiny_model(6)
    x = random_images(20, seed=6)
    r = evaluate_model(model, x, labelled_by(model, x), eps=1.5, norm="l2", profile=SMALL, baseline=False,
                       progress=False)
    assert r.checks == [] and any("not run for norm='l2'" in note for note in r.notes)
    assert "SPSA" not in r.attacks and r.curve["eps"][-1] == 3.0 and "L2 ε = 1.5" in r.verdict


def test_course_images_are_the_chapters_evaluation_images():
    from coursepkg.data import DatasetNotFoundError, load_dataset, subset

    try:
        x, y = report.course_images("fashion-mnist", 5, profile=SMALL)
    except DatasetNotFoundError as err:
        pytest.skip(f"Fashion-MNIST not available: {err}")
    xs, ys = subset(*load_dataset("fashion-mnist", "test"), SMALL.eval_subset)
    assert torch.equal(x, xs[:5]) and torch.equal(y, ys[:5])
    more, _ = report.course_images("fashion-mnist", SMALL.eval_subset + 3, profile=SMALL)
    assert len(more) == SMALL.eval_subset + 3 and torch.equal(more[:SMALL.eval_subset], xs)


# --------------------------------------------------------------------------------------
# Bad input: one line that says what to do
# --------------------------------------------------------------------------------------
def _one_line_error(call, match):
    with pytest.raises((ValueError, TypeError), match=match) as info:
        call()
    assert "\n" not in str(info.value), str(info.value)
    return str(info.value)


def test_bad_model_and_data_give_one_line_errors():
    model, x = tiny_model(), random_images(8)
    y = labelled_by(model, x)

    class OneRow(nn.Module):
        def forward(self, x):
            return model(x)[:1]

    class Labels(nn.Module):
        def forward(self, x):
            return model(x).argmax(1)

    run = lambda m=model, xs=x, ys=y, **kw: evaluate_model(m, xs, ys, **{"eps": 0.1, "progress": False,
                                                                          "baseline": False, **kw})
    _one_line_error(lambda: run(OneRow()), "one row of logits per image")
    _one_line_error(lambda: run(Labels()), "one row of logits per image")
    _one_line_error(lambda: run(xs=x * 2), r"\[0, 1\]")
    _one_line_error(lambda: run(xs=x[:, 0]), "N x C x H x W")
    _one_line_error(lambda: run(dataset="cifar10"), "shape")
    _one_line_error(lambda: run(ys=y + 10), "labels must lie in 0 .. 9")
    _one_line_error(lambda: run(ys=y.float()), "integer labels")
    for eps, match in ((-0.1, ">= 0"), (2.0, "at most 1"), (0.0, "above 0"), (float("nan"), "finite")):
        _one_line_error(lambda e=eps: run(eps=e), match)
    _one_line_error(lambda: run(norm="l1"), "norm")


def test_bad_model_specs_and_data_files(tmp_path):
    from coursepkg.report import load_data, load_model

    _one_line_error(lambda: load_model("no_such_package_xyz.models:build"), "cannot import")
    _one_line_error(lambda: load_model("json:no_such_factory"), "has no")
    not_script = tmp_path / "weights.pt"
    torch.save(tiny_model().state_dict(), not_script)
    _one_line_error(lambda: load_model(str(not_script)), "not a TorchScript file")
    _one_line_error(lambda: load_model(str(tmp_path / "missing.pt")), "no model file")
    _one_line_error(lambda: load_model("just words"), "TorchScript file or an entry point")
    bad = tmp_path / "bad.pt"
    torch.save({"images": random_images(2)}, bad)
    _one_line_error(lambda: load_data(bad), "needs 'x'")
    _one_line_error(lambda: load_data(tmp_path / "none.pt"), "no data file")


# --------------------------------------------------------------------------------------
# The command line
# --------------------------------------------------------------------------------------
FACTORY = """
import torch
from torch import nn


def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10)).eval()
"""


@pytest.fixture
def small_cli(monkeypatch, tmp_path):
    """A factory module on sys.path, a data file labelled by its model, and tiny budgets."""
    (tmp_path / "my_defence_factory.py").write_text(textwrap.dedent(FACTORY))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(config.OVERRIDES_ENV, SMALL_OVERRIDES)
    x = random_images(N, seed=4)
    y = labelled_by(tiny_model(0), x)
    torch.save({"x": x, "y": y}, tmp_path / "images.pt")
    return tmp_path


def _check_written(out, n=N):
    files = sorted(p.name for p in out.iterdir())
    assert files == ["report.html", "report.json", "report.md"], files
    page = (out / "report.html").read_text(encoding="utf-8")
    assert 'id="verdict"' in page and "data:image/png;base64," in page
    assert "http://" not in page and "https://" not in page and "<script" not in page
    data = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert data["versions"]["torch"] == torch.__version__ and data["budgets"]["pgd_steps"] == 5
    assert len(data["correct"]) == n and "## Verdict" in (out / "report.md").read_text(encoding="utf-8")
    return data


@pytest.mark.slow
def test_cli_writes_three_files_for_an_entry_point(small_cli, capsys):
    out = small_cli / "out"
    status = report.main(["my_defence_factory:build", "--data", str(small_cli / "images.pt"), "--eps", "0.05",
                          "--profile", "quick", "--out", str(out), "--no-progress"])
    assert status == 0, capsys.readouterr().err
    data = _check_written(out)
    assert data["clean"]["value"] == 1.0 and data["name"] == "my_defence_factory:build"


@pytest.mark.slow
def test_cli_writes_three_files_for_a_torchscript_file(small_cli, capsys):
    scripted = small_cli / "model.ts"
    torch.jit.save(torch.jit.script(tiny_model(0)), str(scripted))
    out = small_cli / "out_ts"
    status = report.main([str(scripted), "--data", str(small_cli / "images.pt"), "--eps", "0.05", "--n", "30",
                          "--profile", "quick", "--out", str(out), "--no-progress"])
    assert status == 0, capsys.readouterr().err
    data = _check_written(out, n=30)
    assert data["n"] == 30 and data["name"] == str(scripted)


@pytest.mark.parametrize("args,match", [
    (["no_such_package_xyz:build", "--data", "images.pt", "--eps", "0.1"], "cannot import"),
    (["my_defence_factory:build", "--data", "images.pt", "--eps", "3"], "at most 1"),
    (["my_defence_factory:build", "--data", "images.pt"], "give the budget with --eps"),
    (["my_defence_factory:build", "--eps", "0.1"], "give the images"),
    (["my_defence_factory:build", "--data", "missing.pt", "--eps", "0.1"], "no data file"),
])
def test_cli_bad_input_prints_one_error_line_and_exits_2(small_cli, capsys, monkeypatch, args, match):
    monkeypatch.chdir(small_cli)
    assert report.main(args + ["--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and match in err, err


def test_python_m_coursepkg_report_fails_cleanly(tmp_path):
    """The module runs as ``python -m coursepkg.report``; a bad MODEL is one line, no traceback."""
    done = subprocess.run([sys.executable, "-m", "coursepkg.report", "no_such_package_xyz:build",
                           "--dataset", "fashion-mnist", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: cannot import") and "Traceback" not in done.stderr, done.stderr
