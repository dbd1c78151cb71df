# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% tags=["remove-cell"]
# Set-up: on Colab, install the course's package at the book's version; elsewhere, nothing.
import sys
if "google.colab" in sys.modules:
    %pip install -q "coursepkg @ git+https://github.com/adversarial-defences-course/course@main"

# %% [markdown]
# # 1. Adversarial examples and threat models
#
# ```{admonition} Threat model of this chapter
# :class: tip
# **Data.** Fashion-MNIST test images {cite}`xiao2017fashion`, pixels in [0, 1].
# The attacker may move every pixel by at most ε = 0.1 (the L∞ ball, the course's default),
# or move the whole image by a Euclidean distance of at most ε₂ (the L2 ball), or rewrite a
# small fraction γ of the pixels (the L0 ball); the values are printed below.
# **Knowledge.** Everything about the model (white-box), except in the last section, where
# the attacker sees only the label the model answers (black-box).
# **Defence.** None: this chapter builds the undefended baseline that every later chapter
# starts from, and the attacks every later chapter uses.
# **Result.** A handful of gradient steps takes the baseline's accuracy to nearly zero
# inside a budget the eye barely notices; hiding the gradient behind a label-only answer
# does not help, because adversarial examples made on a substitute model transfer.
# ```
#
# A classifier that labels nine images in ten correctly can be made to label nearly every
# one of them wrongly by changes too small to see. {cite}`szegedy2014intriguing` found these
# **adversarial examples** by optimisation; {cite}`goodfellow2015explaining` showed that a
# single gradient step finds them. This chapter trains the course's baseline, fools it,
# names the ideas the rest of the course is built on, states exactly what an attacker is
# allowed to do, and runs the attacks that every later chapter uses against the defences.

# %%
import functools
import time

import torch

from coursepkg import attacks, evaluate, plots, zoo
from coursepkg.attacks import blackbox
from coursepkg.config import device, profile, seed_everything
from coursepkg.data import dataset_info, load_dataset, subset

P = profile()  # every budget of the chapter comes from here
DEV = device()
seed_everything(0)
info = dataset_info("fashion-mnist")
CLASSES = info.classes
print(f"profile {P.name!r} on {DEV}; {P.eval_subset} test examples for the fast attacks, "
      f"{P.expensive_eval_subset} for the slow ones")

# %% [markdown]
# ## An adversarial example
#
# The baseline is the small convolutional network of `coursepkg.models.SmallCNN`, trained
# with the cross-entropy on clean images. The model zoo trains it once and caches it, so
# this cell takes seconds after the first run. Its normalisation is its first layer: every
# model of the course takes pixels in [0, 1], so a budget is always measured in pixels.

# %%
model = zoo.get("standard")  # the undefended baseline, trained once and cached

x_test, y_test = load_dataset(info.name, "test")
x, y = subset(x_test, y_test, P.eval_subset)  # the same test examples in every chapter
x, y = x.to(DEV), y.to(DEV)
x_few, y_few = x[:P.expensive_eval_subset], y[:P.expensive_eval_subset]  # for the slow attacks

clean_acc = evaluate.accuracy(model, x, y)
print(f"clean accuracy of the baseline on {len(x)} test images: {clean_acc:.3f}")
assert clean_acc > 0.8, f"the baseline should classify most clean images correctly, got {clean_acc:.3f}"

# %% [markdown]
# The fast gradient sign method (FGSM) of {cite}`goodfellow2015explaining` takes one step
# of size ε in the direction of the sign of the loss's gradient with respect to the input.
# With ε = 0.1, each pixel changes by a tenth of its range.

# %%
EPS = info.eps  # the course's L-infinity budget for Fashion-MNIST
x_fgsm = attacks.fgsm(model, x, y, eps=EPS)
fgsm_acc = evaluate.accuracy(model, x_fgsm, y)
pred_clean = evaluate.predictions(model, x)
pred_fgsm = evaluate.predictions(model, x_fgsm)
print(f"accuracy: clean {clean_acc:.3f}, under FGSM at eps = {EPS}: {fgsm_acc:.3f}")

# the first eight test images the model gets right, whatever FGSM does to them
shown = torch.nonzero(pred_clean == y).flatten()[:8]
fig = plots.show_adversarial_grid(x[shown], x_fgsm[shown], y[shown], pred_clean[shown],
                                  pred_fgsm[shown], CLASSES,
                                  title=f"FGSM, ε = {EPS}: predictions (green right, red wrong)")

# %%
assert fgsm_acc < clean_acc - 0.4, (
    f"one FGSM step at eps={EPS} should cost the baseline a large part of its accuracy: "
    f"clean {clean_acc:.3f}, FGSM {fgsm_acc:.3f}")

# %% [markdown]
# The top row is what the model was shown, the middle row what the attacker sent, the
# bottom row the difference between them. A person labels the two rows alike; the model
# does not.

# %% [markdown]
# ## The vocabulary of the course
#
# The course uses a small set of words with precise meanings; each links to the glossary.
#
# - An {term}`adversarial perturbation` is the difference $\delta = x' - x$ between an
#   adversarial example $x'$ and the clean input $x$ it was made from: the bottom row above.
# - {term}`Adversarial robustness <adversarial robustness>` is a model's ability to keep its
#   answer under such perturbations. It is measured as {term}`robust accuracy`: the fraction
#   of test examples that the model classifies correctly under the strongest attack allowed
#   by the threat model, example by example.
# - {term}`Adversarial detection <adversarial detection>` gives up on classifying an
#   adversarial input correctly and tries instead to flag it (chapter 6).
# - {term}`Adversarial training <adversarial training>` trains the model on adversarial
#   examples made during training, so that it learns to resist them (chapter 2).
# - {term}`Gradient masking <gradient masking>` is a defence that makes the model's
#   gradient useless to the attacker without making the model any more correct
#   {cite}`papernot2017practical,papernot2018sok`. Its common forms are
#   {term}`obfuscated gradients` {cite}`athalye2018obfuscated`:
#   {term}`shattered gradients` (a non-differentiable step, or one whose gradient is wrong),
#   {term}`stochastic gradients` (randomness that changes the gradient from one call to the
#   next), and {term}`vanishing gradients` or {term}`exploding gradients` (a gradient
#   driven towards zero or towards infinity, often by a very deep or iterated computation).
#   Masked gradients defeat the attack, not the adversarial examples: a stronger or
#   differently built attack still finds them. The last section of this chapter shows the
#   simplest case.

# %% [markdown]
# ## Threat models
#
# A claim of robustness means nothing until it says against whom. A {term}`threat model`
# fixes three things {cite}`carlini2019evaluating`:
#
# 1. **The data**: here the Fashion-MNIST test images, pixels in [0, 1].
# 2. **What the attacker may change**: a set of allowed inputs around each clean image $x$,
#    usually an {term}`Lp norm` ball of radius ε, the {term}`perturbation budget`:
#
#    $$ S_p(x) = \{\, x' \in [0, 1]^d : \lVert x' - x \rVert_p \le \varepsilon \,\}. $$
#
#    - **L∞**: $\max_i |x'_i - x_i| \le \varepsilon$ -- every pixel may move, none by more
#      than ε. The course's default.
#    - **L2**: $\sqrt{\sum_i (x'_i - x_i)^2} \le \varepsilon_2$ -- the total energy of the
#      change is bounded; a few pixels may move a lot, or many a little.
#    - **L0**: at most $\gamma d$ pixels differ from $x$, by any amount -- a sparse change.
# 3. **What the attacker knows**:
#    - a {term}`white-box attack` knows the architecture and the weights and can compute
#      gradients through the model (and through any defence);
#    - a {term}`black-box attack` may only query the model, receiving its scores or only its
#      label, and may own some data from the same distribution;
#    - an {term}`adaptive attack` knows the defence and is designed against it. The course
#      always ends a defence chapter with one, because a defence must hold against an
#      attacker who has read its paper {cite}`carlini2017bypassing,athalye2018obfuscated`.
#
# The budgets of this chapter:

# %%
EPS_L2 = 1.5  # the chapter's L2 budget (the L-infinity ball's corners lie at 0.1 * 28 = 2.8)
GAMMA = 0.1   # the L0 budget: at most this fraction of the pixels may change (JSMA)
N_PIXELS = x[0].numel()

plots.Table([
    {"norm": "L∞", "budget": f"ε = {EPS}", "meaning": "every pixel moves by at most ε",
     "attacks": "FGSM, BIM, PGD, SPSA"},
    {"norm": "L2", "budget": f"ε₂ = {EPS_L2}", "meaning": "Euclidean length of δ at most ε₂",
     "attacks": "PGD-L2; C&W and DeepFool (smallest δ)"},
    {"norm": "L0", "budget": f"γ = {GAMMA} ({int(GAMMA * N_PIXELS)} of {N_PIXELS} pixels)",
     "meaning": "at most γ·d pixels change", "attacks": "JSMA"},
], caption="Threat models of chapter 1 (Fashion-MNIST test images; white-box unless stated)")

# %% [markdown]
# ## The attacks
#
# Every attack of `coursepkg.attacks` is a function `attack(model, x, y, *, eps, ...)`
# that returns adversarial examples for a whole batch, aimed at the true labels `y`. They
# know nothing about defences: later chapters change the *model* an attack sees, never the
# attack. Write $L(x, y)$ for the cross-entropy of the model's logits at $x$.
#
# **FGSM** {cite}`goodfellow2015explaining` linearises the loss and jumps to the corner of
# the L∞ ball it favours:
#
# $$ x' = \mathrm{clip}_{[0,1]}\big(x + \varepsilon\, \mathrm{sign}\, \nabla_x L(x, y)\big). $$
#
# **BIM** {cite}`kurakin2017adversarial` takes many small steps of that kind, projecting
# back into the ball after each. **PGD** {cite}`madry2018towards` is BIM from a random
# starting point in the ball, restarted several times; it is the course's yardstick.
# For L∞ the step is $\alpha\,\mathrm{sign}\,\nabla_x L$; for L2 it is $\alpha\,\nabla_x L /
# \lVert \nabla_x L \rVert_2$, and the projection rescales δ onto the L2 ball:
#
# $$ x^{t+1} = \Pi_{S_p(x)}\big(x^t + \alpha\, g_p(\nabla_x L(x^t, y))\big). $$
#
# **C&W L2** {cite}`carlini2017towards` looks for the *smallest* perturbation that changes
# the label. It minimises $\lVert\delta\rVert_2^2 + c\, f(x + \delta)$, where $f$ is
# positive while the true class's logit beats every other logit, writes $x + \delta$ as
# $\tfrac12(\tanh w + 1)$ so that the box constraint disappears, and searches over the
# constant $c$ by bisection, example by example.
#
# **JSMA** {cite}`papernot2016limitations` changes few pixels: it builds a saliency map from
# the Jacobian of the logits, picks the pair of pixels that most raises a target class and
# lowers the others, sets them to their maximum, and repeats until the label flips or a
# fraction γ of the pixels has been used.
#
# **DeepFool** {cite}`moosavi2016deepfool` linearises the classifier around the current
# point, steps to the nearest linearised decision boundary, and repeats; a small overshoot
# carries it across. It also finds small L2 perturbations, with no constant to search.
#
# **SPSA** {cite}`uesato2018adversarial,spall1992spsa` never asks for a gradient. It
# estimates one from the loss at random points $x \pm \delta v$ with $v \in \{-1, 1\}^d$,
# averaged over many samples, and follows it inside the L∞ ball. It only needs the model's
# scores, so a defence that breaks back-propagation does not stop it.
#
# The cell below runs the L∞ and L2 attacks on the evaluation examples, and the slower ones
# on the first examples of the same set (SPSA, which needs many thousands of forward passes
# per image, on fewer still); each result records the clean images it attacked.

# %%
def run(name, attack, x_clean, y_clean, **kwargs):
    """Run one attack, time it, and keep what the table and figures need."""
    start = time.perf_counter()
    x_adv = attack(model, x_clean, y_clean, **kwargs)
    seconds = time.perf_counter() - start
    print(f"{name:>10}: {seconds:6.1f} s on {len(x_clean)} examples")
    return {"x": x_clean, "y": y_clean, "x_adv": x_adv, "seconds": seconds}


results = {
    "FGSM": run("FGSM", attacks.fgsm, x, y, eps=EPS),
    "BIM": run("BIM", attacks.bim, x, y, eps=EPS),
    "PGD-L∞": run("PGD-L∞", attacks.pgd, x, y, eps=EPS, restarts=P.pgd_restarts),
    "PGD-L2": run("PGD-L2", attacks.pgd, x, y, eps=EPS_L2, norm="l2", restarts=P.pgd_restarts),
    "C&W-L2": run("C&W-L2", attacks.cw_l2, x_few, y_few),
    "DeepFool": run("DeepFool", attacks.deepfool, x_few, y_few),
    "JSMA": run("JSMA", attacks.jsma, x_few, y_few, gamma=GAMMA),
    "SPSA": run("SPSA", attacks.spsa, x[:P.spsa_eval_subset], y[:P.spsa_eval_subset], eps=EPS),
}
BUDGET = {"FGSM": f"L∞ ≤ {EPS}", "BIM": f"L∞ ≤ {EPS}", "PGD-L∞": f"L∞ ≤ {EPS}",
          "PGD-L2": f"L2 ≤ {EPS_L2}", "C&W-L2": "L2, smallest", "DeepFool": "L2, smallest",
          "JSMA": f"L0 ≤ {GAMMA}·d", "SPSA": f"L∞ ≤ {EPS}"}

# %% [markdown]
# ### The table
#
# For each attack: the accuracy of the baseline on the adversarial examples, the *success
# rate* (the fraction of the correctly classified examples that the attack misclassifies),
# and the median size of the perturbations that succeeded, in the three norms. L0 is given
# as the fraction of the image's pixels that changed.

# %%
def summary(name, r):
    """One row of the table: accuracy, success rate and median norms of the successes."""
    correct_clean = evaluate.predictions(model, r["x"]) == r["y"]
    fooled = evaluate.predictions(model, r["x_adv"]) != r["y"]
    success = correct_clean & fooled
    norms = evaluate.perturbation_norms(r["x"], r["x_adv"])
    median = {k: float(v[success].float().median()) if success.any() else float("nan")
              for k, v in norms.items()}
    return {"attack": name, "threat model": BUDGET[name], "examples": len(r["x"]),
            "accuracy": evaluate.accuracy(model, r["x_adv"], r["y"]),
            "success rate": evaluate.attack_success_rate(model, r["x"], r["x_adv"], r["y"]),
            "median L0 / d": median["l0"] / N_PIXELS, "median L2": median["l2"],
            "median L∞": median["linf"], "seconds": round(r["seconds"], 1)}


rows = {name: summary(name, r) for name, r in results.items()}
plots.Table(list(rows.values()), caption="Every attack of chapter 1 on the undefended baseline")

# %% [markdown]
# What the table shows, each point checked in the next cell:
#
# - Every bounded attack stayed inside its ball.
# - The single FGSM step is weaker than the many steps of BIM and PGD, as it must be on a
#   model whose gradients are informative.
# - PGD-20 leaves the baseline with little, but not with nothing: a few percent of the images
#   survive ε = 0.1, and nearly all of them are trousers (the counts are printed below). A
#   trouser's two legs and the dark gap between them are far from every other class in pixel
#   space, and the baseline is very confident about them; at twice the budget, none survives
#   (the curves further down). This is the honest number later chapters must beat.
# - C&W and DeepFool, which look for the *smallest* change, succeed with perturbations much
#   shorter in L2 than PGD-L2's, which spends its whole budget.
# - JSMA never changes more than the fraction γ of the pixels it is allowed.
# - SPSA, which never sees a gradient, succeeds on most images but less often than PGD: a
#   gradient estimated from a budget of forward passes is noisier than the true one. It is a
#   check for defences that break gradients, not the yardstick.

# %%
for name in ("FGSM", "BIM", "PGD-L∞", "SPSA"):
    r = results[name]
    linf = evaluate.perturbation_norms(r["x"], r["x_adv"])["linf"]
    assert float(linf.max()) <= EPS + 1e-5, f"{name} left the L∞ ball: {float(linf.max()):.4f}"
l2 = evaluate.perturbation_norms(x, results["PGD-L2"]["x_adv"])["l2"]
assert float(l2.max()) <= EPS_L2 + 1e-4, f"PGD-L2 left the L2 ball: {float(l2.max()):.4f}"

pgd_acc = rows["PGD-L∞"]["accuracy"]
assert pgd_acc <= rows["FGSM"]["accuracy"] + 0.01, "PGD must not be weaker than FGSM on an honest model"
assert rows["BIM"]["accuracy"] <= rows["FGSM"]["accuracy"] + 0.01, "BIM must not be weaker than FGSM"
assert pgd_acc < 0.15, f"PGD at eps={EPS} should leave the undefended baseline little, got {pgd_acc:.3f}"

survivors = evaluate.predictions(model, results["PGD-L∞"]["x_adv"]) == y
counts = torch.bincount(y[survivors].cpu(), minlength=len(CLASSES))
print(f"PGD-20 at eps = {EPS}: {int(survivors.sum())} of {len(y)} images survive; by class: "
      + ", ".join(f"{CLASSES[k]} {int(c)}" for k, c in enumerate(counts) if c))
trouser = CLASSES.index("Trouser")
assert counts[trouser] >= 0.5 * counts.sum(), "most images that survive PGD should be trousers"

# C&W finds shorter L2 perturbations than PGD-L2, compared on the examples both fool
n_few = len(x_few)
both = ((evaluate.predictions(model, x_few) == y_few)
        & (evaluate.predictions(model, results["C&W-L2"]["x_adv"]) != y_few)
        & (evaluate.predictions(model, results["PGD-L2"]["x_adv"][:n_few]) != y_few))
cw_l2 = evaluate.perturbation_norms(x_few, results["C&W-L2"]["x_adv"])["l2"][both].median()
pgd_l2 = evaluate.perturbation_norms(x_few, results["PGD-L2"]["x_adv"][:n_few])["l2"][both].median()
print(f"on the {int(both.sum())} examples both fool: median L2 of C&W {float(cw_l2):.3f}, "
      f"of PGD-L2 {float(pgd_l2):.3f}")
assert int(both.sum()) >= n_few // 2, "too few common successes to compare C&W and PGD-L2"
assert float(cw_l2) < 0.8 * float(pgd_l2), "C&W should find clearly shorter L2 perturbations than PGD-L2"

# JSMA never changes more than a fraction gamma of the pixels
jsma_l0 = evaluate.perturbation_norms(x_few, results["JSMA"]["x_adv"])["l0"].float() / N_PIXELS
assert float(jsma_l0.max()) <= GAMMA + 1.0 / N_PIXELS, f"JSMA changed {float(jsma_l0.max()):.3f} of the pixels"
assert rows["JSMA"]["success rate"] > 0.5, "JSMA should fool the baseline on most examples"
for name in ("C&W-L2", "DeepFool"):
    assert rows[name]["success rate"] > 0.8, f"{name} should fool the undefended baseline almost always"
assert rows["SPSA"]["success rate"] > 0.4, "SPSA should fool the undefended baseline on many examples"
pgd_on_spsa_set = evaluate.attack_success_rate(model, results["SPSA"]["x"],
                                               results["PGD-L∞"]["x_adv"][:P.spsa_eval_subset],
                                               results["SPSA"]["y"])
print(f"on SPSA's {P.spsa_eval_subset} examples: success of SPSA {rows['SPSA']['success rate']:.3f}, "
      f"of PGD {pgd_on_spsa_set:.3f}")

# %% [markdown]
# ### The perturbations
#
# The same two images attacked by each method, each perturbation on its own colour scale
# (red: brighter, blue: darker), with its three norms. FGSM, BIM, PGD and SPSA move nearly
# every pixel by the full ε, including the black background; PGD-L2, C&W and DeepFool
# concentrate their change on the garment's edges; JSMA lights up a few scattered pixels.
# The title says what the model answered.

# %%
two = shown[shown < P.spsa_eval_subset][:2].tolist()  # every attack ran on these two
fig = plots.show_perturbations(x_few, {name: r["x_adv"] for name, r in results.items()},
                               index=two, model=model, classes=CLASSES, y=y_few)

# %% [markdown]
# ## Accuracy against the budget
#
# A single number at one ε hides how the model fails. The curves below show the accuracy of
# the baseline as the budget grows, in each norm. For L∞ each point is a fresh attack at that
# ε (`evaluate.accuracy_vs_eps`). C&W, DeepFool and JSMA return the *smallest* perturbation
# they found, so their curve comes free: at budget ε, an example is still correct if its
# attack failed or needed more than ε.
#
# Two sanity checks hide in these curves {cite}`carlini2019evaluating`: accuracy must fall
# as ε grows, and many steps must do at least as well as one. A defence that breaks either
# is masking its gradients; the baseline breaks neither, and at twice the course's budget
# PGD leaves it nothing, trousers included. A random sign perturbation of the
# same L∞ size is drawn as a control: it barely changes the accuracy, so the attacks'
# perturbations are anything but random.

# %%
def random_sign_noise(model, x, y, *, eps):
    """The control: every pixel moved by +eps or -eps at random (inside the L∞ ball)."""
    return (x + eps * torch.randint_like(x, 0, 2).mul(2).sub(1)).clamp(0.0, 1.0)


EPS_GRID = [0.0, 0.02, 0.05, EPS, 2 * EPS]
curves_linf = {
    "FGSM": evaluate.accuracy_vs_eps(model, x, y, attacks.fgsm, EPS_GRID),
    "PGD-L∞": evaluate.accuracy_vs_eps(model, x, y, attacks.pgd, EPS_GRID),
    "random ±ε": evaluate.accuracy_vs_eps(model, x, y, random_sign_noise, EPS_GRID),
}
EPS2_GRID = [0.0, 0.5, 1.0, 1.5, 2.5]
curves_l2 = {"PGD-L2": evaluate.accuracy_vs_eps(model, x, y, functools.partial(attacks.pgd, norm="l2"),
                                                EPS2_GRID)}


def minimal_attack_curve(r, norm, grid):
    """Accuracy at each budget of an attack that returns its smallest perturbation."""
    size = evaluate.perturbation_norms(r["x"], r["x_adv"])[norm].float()
    if norm == "l0":
        size = size / N_PIXELS
    correct_clean = evaluate.predictions(model, r["x"]) == r["y"]
    fooled = evaluate.predictions(model, r["x_adv"]) != r["y"]
    return list(grid), [float((correct_clean & ~(fooled & (size <= b))).float().mean()) for b in grid]


curves_l2["C&W-L2"] = minimal_attack_curve(results["C&W-L2"], "l2", EPS2_GRID)
curves_l2["DeepFool"] = minimal_attack_curve(results["DeepFool"], "l2", EPS2_GRID)
L0_GRID = [0.0, 0.01, 0.02, 0.05, GAMMA]
curves_l0 = {"JSMA": minimal_attack_curve(results["JSMA"], "l0", L0_GRID)}

import matplotlib.pyplot as plt  # noqa: E402

fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
plots.plot_accuracy_vs_eps(curves_linf, ax=axes[0], xlabel="ε (L∞)", chance=1 / len(CLASSES),
                           mark_eps=EPS, title="L∞")
plots.plot_accuracy_vs_eps(curves_l2, ax=axes[1], xlabel="ε₂ (L2)", chance=1 / len(CLASSES),
                           mark_eps=EPS_L2, title="L2")
plots.plot_accuracy_vs_eps(curves_l0, ax=axes[2], xlabel="fraction of pixels changed (L0)",
                           chance=1 / len(CLASSES), mark_eps=GAMMA, title="L0")
fig.tight_layout()

# %%
pgd_curve, fgsm_curve = curves_linf["PGD-L∞"].accuracy, curves_linf["FGSM"].accuracy
noise_curve = curves_linf["random ±ε"].accuracy
for a, b in zip(pgd_curve, pgd_curve[1:]):
    assert b <= a + 0.01, f"PGD accuracy must fall as eps grows: {pgd_curve}"
for a, b in zip(curves_l2["PGD-L2"].accuracy, curves_l2["PGD-L2"].accuracy[1:]):
    assert b <= a + 0.01, f"PGD-L2 accuracy must fall as eps grows: {curves_l2['PGD-L2'].accuracy}"
for eps, p, f in zip(EPS_GRID, pgd_curve, fgsm_curve):
    assert p <= f + 0.01, f"at eps={eps} PGD ({p:.3f}) must be at least as strong as FGSM ({f:.3f})"
assert fgsm_curve[-1] < fgsm_curve[1], "FGSM accuracy should be lower at the largest eps than at the smallest"
assert pgd_curve[-1] < 0.02, f"at eps = {2 * EPS} PGD should leave (almost) nothing, got {pgd_curve[-1]:.3f}"
i_eps = EPS_GRID.index(EPS)
assert noise_curve[i_eps] > clean_acc - 0.1, (
    f"random ±eps noise should barely hurt: {noise_curve[i_eps]:.3f} vs clean {clean_acc:.3f}")
print("accuracy at eps =", EPS_GRID)
for name, c in curves_linf.items():
    print(f"  {name:>10}: " + "  ".join(f"{a:.3f}" for a in c.accuracy))

# %% [markdown]
# ## Explore ε yourself
#
# The figure shows one test image attacked by PGD at growing ε: the adversarial image with
# the model's answer and confidence (top) and the perturbation on a common colour scale
# (bottom). The image is the first one the model labels correctly and PGD fools at
# ε = 0.1; watch where its label flips.
#
# Launch this notebook (rocket icon above) to use the interactive explorer.
# Its sliders choose the image and ε; the panels show the clean image, the adversarial
# image, the perturbation and the model's probabilities for every class.

# %%
pgd_for_display = functools.partial(attacks.pgd, restarts=1)
i_show = int(torch.nonzero((pred_clean == y) & ~survivors).flatten()[0])
fig = plots.eps_strip(model, x[i_show:i_show + 1], y[i_show:i_show + 1], pgd_for_display,
                      [0.0, 0.01, 0.02, 0.04, 0.07, 0.1], CLASSES)

# %%
plots.eps_explorer(model, x[:50], y[:50], pgd_for_display, CLASSES, eps_max=0.3)

# %% [markdown]
# ## A model that answers only its label
#
# Here is a thought experiment, told by {cite}`goodfellow2017attacking`. Every attack above
# follows the gradient of the model's scores. Suppose the model's owner publishes only its
# answer -- the label, not the probabilities. As a function of the input, the answer is
# constant almost everywhere and jumps at the decision boundaries, so its gradient is zero
# wherever it exists: the attacker's compass points nowhere. That is
# {term}`gradient masking` in its purest form.
#
# The wrapper below is that model: it returns a one-hot vector of the baseline's label
# (kept on autograd's graph with a zero weight, so that the attacks run and receive the
# gradient that a label really has, zero).

# %%
class LabelOnly(torch.nn.Module):
    """What a label-only interface exposes: the one-hot vector of the model's prediction."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        logits = self.model(x)
        one_hot = torch.nn.functional.one_hot(logits.argmax(1), logits.shape[1]).to(logits)
        return one_hot + 0.0 * logits  # the value of a label, the gradient of a label: zero


label_only = LabelOnly(model)
white_box = evaluate.robust_accuracy(label_only, x, y, {
    "FGSM": functools.partial(attacks.fgsm, eps=EPS),
    "PGD-L∞": functools.partial(attacks.pgd, eps=EPS, restarts=P.pgd_restarts)})
print(f"label-only model: clean {white_box.clean_accuracy:.3f}, "
      + ", ".join(f"{k} {v:.3f}" for k, v in white_box.per_attack.items()))
# ... yet it is exactly as wrong as the baseline on the baseline's adversarial examples
same_answers = evaluate.accuracy(label_only, results["PGD-L∞"]["x_adv"], y)
print(f"label-only model on the baseline's PGD examples: {same_answers:.3f} (baseline: {pgd_acc:.3f})")

# %%
assert white_box.per_attack["FGSM"] > clean_acc - 0.02, "FGSM should find nothing without a gradient"
assert white_box.per_attack["PGD-L∞"] > clean_acc - 0.15, "PGD should find little more than noise does"
assert abs(same_answers - pgd_acc) < 1e-9, "hiding the scores must not change a single label"

# %% [markdown]
# The label-only model *looks* robust to white-box attacks, yet it answers every input
# exactly as the baseline does, so every adversarial example of the baseline is one of its
# own. Hiding the gradient has not removed a single adversarial example; it has only hidden
# the map to them.
#
# An attacker can redraw the map. The black-box attack of {cite}`papernot2017practical`
# trains a {term}`substitute model` from labels alone: start from a few images of the
# domain, ask the model for their labels, train a small network on them, then add new points where the
# substitute's output changes fastest (the Jacobian-based augmentation: a step of size λ
# along the sign of the gradient of the substitute's score for the oracle's label), ask for
# their labels, retrain, and repeat. The attacker then runs PGD on the substitute, whose
# gradients are real, and sends the result to the label-only model. This works because
# adversarial examples *transfer* between models trained for the same task
# ({term}`transferability`, {cite}`szegedy2014intriguing,papernot2016transferability`).
#
# **Threat model of this section.** Fashion-MNIST, L∞, ε = 0.1 as above (and larger budgets
# for comparison). The attacker knows the input domain and owns a few unlabelled images from
# it (here drawn from the training split, because the test examples are kept for the
# evaluation; their labels are never used). It may ask the model for the label of any image
# and knows nothing else: not the weights, not the scores, not the labelled training set.
# Its substitute is the course's small CNN, a natural choice for 28 × 28 images rather than
# knowledge of the model; {cite}`papernot2017practical` found the substitute's architecture
# to matter little.

# %%
x_train, _ = load_dataset(info.name, "train")  # the attacker's images; their labels are never used
x_seed = subset(x_train, torch.zeros(len(x_train), dtype=torch.long), P.substitute_seed_size, seed=1)[0]


def oracle(images):
    """The label-only interface: one label per image, nothing else."""
    return evaluate.predictions(label_only, images.to(DEV)).cpu()


substitute = blackbox.train_substitute(oracle, x_seed, rounds=P.substitute_rounds,
                                       epochs=P.substitute_epochs, device=DEV)
facts = substitute.substitute_facts
agreement = float((evaluate.predictions(substitute, x) == evaluate.predictions(model, x)).float().mean())
print(f"substitute trained on {facts['set_sizes'][-1]} images after {facts['oracle_queries']} label "
      f"queries; it agrees with the model on {agreement:.3f} of the test images")

TRANSFER_EPS = [EPS, 2 * EPS, 3 * EPS]
transfer_rows, transfer_curve, noise_control = [], [], []
for eps in TRANSFER_EPS:
    x_transfer = blackbox.transfer_attack(substitute, x, y, attack=attacks.pgd, eps=eps)
    noisy = random_sign_noise(None, x, y, eps=eps)
    transfer_curve.append(evaluate.accuracy(label_only, x_transfer, y))
    noise_control.append(evaluate.accuracy(label_only, noisy, y))
    transfer_rows.append({"ε": eps,
                          "success: transfer": evaluate.attack_success_rate(label_only, x, x_transfer, y),
                          "success: random ±ε": evaluate.attack_success_rate(label_only, x, noisy, y)})
white_box_success = 1 - white_box.per_attack["PGD-L∞"] / white_box.clean_accuracy
transfer_rows[0]["success: white-box PGD"] = white_box_success
for row in transfer_rows[1:]:
    row["success: white-box PGD"] = "–"
plots.Table(transfer_rows, caption="Attacks on the label-only model (success rates)")

# %%
fig = plots.plot_accuracy_vs_eps(
    {"transfer from the substitute": (TRANSFER_EPS, transfer_curve),
     "random ±ε": (TRANSFER_EPS, noise_control),
     "white-box PGD (gradient masked)": ([EPS], [white_box.per_attack["PGD-L∞"]])},
    chance=1 / len(CLASSES), mark_eps=EPS, title="The label-only model")

# %%
at_eps = transfer_rows[0]
assert at_eps["success: transfer"] > 2 * at_eps["success: random ±ε"], "transfer should beat noise by far"
assert at_eps["success: transfer"] > at_eps["success: random ±ε"] + 0.1, "transfer should beat noise by far"
assert at_eps["success: transfer"] > white_box_success + 0.1, (
    "the black-box transfer attack should beat the white-box attack stopped by the masked gradient")
for row in transfer_rows:
    assert row["success: transfer"] > row["success: random ±ε"] + 0.1, f"at eps={row['ε']}: {row}"
assert transfer_rows[-1]["success: transfer"] > 0.5, "at three times the budget most transfers should succeed"

# %% [markdown]
# The substitute never saw a score or a training label, yet the adversarial examples made on
# it fool the label-only model several times as often as random noise of the same size, and
# far more often than the white-box attack that the masked gradient stopped. At ε = 0.1 the
# transfer succeeds less often than white-box PGD on the baseline: a substitute that agrees
# with the model on most, not all, images loses some of the attack's strength on the way,
# which is why a black-box number is never the last word on a defence. With a larger budget
# (at 0.3, the budget Papernot et al. used on MNIST) most transfers succeed; more rounds of
# augmentation, or an ensemble of substitutes {cite}`tramer2018ensemble`, would also raise it.
#
# The lesson for the rest of the course {cite}`goodfellow2017attacking,athalye2018obfuscated`:
# a defence whose only effect is to make the gradient useless does not make the model more
# correct, and an attacker who cannot use the gradient goes around it. Every later chapter
# therefore ends with an {term}`adaptive attack` and, where the gradient is masked, also a
# transfer or gradient-free (SPSA) attack.

# %% [markdown]
# ## Summary
#
# - An undefended classifier is fooled by perturbations that a person does not notice; one
#   gradient step (FGSM) is enough to cost most of its accuracy, and PGD takes nearly all.
# - A threat model states the data, the norm and budget, and the attacker's knowledge. The
#   course's default is Fashion-MNIST, L∞, ε = 0.1, white-box and adaptive.
# - Minimal-perturbation attacks (C&W, DeepFool, JSMA) measure how close the boundary is;
#   bounded attacks (FGSM, BIM, PGD, SPSA) measure accuracy inside a budget.
# - Hiding the gradient is not a defence: a substitute model trained from labels alone
#   brings the attack back.

# %% [markdown]
# ## Exercises
#
# **Exercise 1 (the balls).** On a 28 × 28 image, what is the largest L2 norm of a
# perturbation inside the L∞ ball of radius 0.1? Is the L2 threat model with ε₂ = 1.5
# weaker or stronger than the L∞ one with ε = 0.1?

# %% [markdown] tags=["solution"]
# ```{admonition} Solution
# :class: dropdown
# The largest L2 norm is reached at a corner of the cube, every pixel moved by ±0.1:
# $\sqrt{784 \times 0.1^2} = 0.1 \times 28 = 2.8$. The smallest L∞ norm of a perturbation on
# the L2 sphere of radius 1.5 is $1.5/28 \approx 0.054$, but one pixel may also move by 1.0.
# So neither ball contains the other: the L∞ ball holds spread-out perturbations far longer
# than 1.5 in L2, and the L2 ball holds concentrated ones (a single pixel turned from black
# to white) far outside the L∞ ball. The two threat models are different, not ordered, and
# robustness in one says little about the other.
# ```

# %% [markdown]
# **Exercise 2 (a targeted attack, coding).** Use `attacks.pgd` with its `target` argument to
# turn the first `P.expensive_eval_subset` evaluation images into "Bag" (class 8) and
# measure the *targeted* success rate (the fraction labelled "Bag" afterwards, among those
# not already bags) at ε ∈ {0.05, 0.1, 0.2}. Is a targeted attack easier or harder than an
# untargeted one at the same ε, and why?

# %% tags=["solution", "hide-input"]
bag = CLASSES.index("Bag")
not_bag = y_few != bag
target = torch.full_like(y_few, bag)
for eps in (0.05, 0.1, 0.2):
    x_t = attacks.pgd(model, x_few[not_bag], y_few[not_bag], eps=eps, target=target[not_bag])
    hit = float((evaluate.predictions(model, x_t) == bag).float().mean())
    print(f"eps = {eps}: {hit:.2f} of the non-bags become 'Bag' "
          f"(untargeted PGD-L∞ accuracy at eps = {EPS}: {pgd_acc:.3f})")

# %% [markdown] tags=["solution"]
# ```{admonition} Solution
# :class: dropdown
# The targeted attack must reach one particular class, the untargeted one any wrong class,
# so at the same ε the targeted success rate is at most the untargeted one, and it is lower
# for classes that look nothing like a bag (trousers, sandals) at small ε. As ε grows, the
# targeted attack catches up: with enough budget every class can be reached.
# ```

# %% [markdown]
# **Exercise 3 (one step against many).** On the baseline, PGD is at least as strong as
# FGSM at every ε. Describe a model for which FGSM would find *more* adversarial examples
# than PGD, and say what that would tell an evaluator.

# %% [markdown] tags=["solution"]
# ```{admonition} Solution
# :class: dropdown
# An iterative attack that starts at the same point as FGSM and may take FGSM's step can do
# no worse than FGSM if it optimises well. If it does worse, its optimisation has failed:
# for instance, the loss surface is flat or jagged near the clean input (vanishing or
# shattered gradients), so small steps go nowhere while one large step lands by luck in a
# region of high loss. This is a warning sign of {term}`gradient masking`
# {cite}`athalye2018obfuscated,carlini2019evaluating`: the defence has made the gradient
# misleading rather than the model robust. Chapter 2 meets it in FGSM adversarial training
# {cite}`tramer2018ensemble`; `evaluate.sanity_checks` tests for it.
# ```

# %% [markdown]
# **Exercise 4 (the cost of a black-box attack).** How many label queries did the substitute
# attack make, and how does the number grow with the number of rounds? What would a model
# owner have to do to notice the attack?

# %% [markdown] tags=["solution"]
# ```{admonition} Solution
# :class: dropdown
# Each round labels the whole current set and then doubles it, so with $n$ seed images and
# $\rho$ rounds the attack makes $n(2^\rho - 1)$ queries (the cell above prints the number
# this run made). The set grows exponentially, which is why Papernot et al. also proposed
# reservoir sampling to keep it small in later rounds. To notice, an owner would have to
# spot a stream of queries that sit unusually close to its decision boundaries -- a form of
# {term}`adversarial detection` over queries rather than inputs, with its own adaptive
# counter-attacks (spread the queries over many accounts, add natural images).
# ```
