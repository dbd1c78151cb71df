"""Detectors of adversarial examples, and a detector joined to its classifier as one model.

A detector does not try to classify an adversarial image correctly: it *refuses* it.  Each
detector here is a ``torch.nn.Module`` from images in [0, 1] to one **score** per image,
higher meaning "more likely adversarial"; a threshold turns the score into a decision.

* :class:`DetectorNetwork` -- Metzen et al. (2017): a small convolutional subnetwork
  (:class:`DetectorHead`) reading an intermediate layer of the frozen classifier, trained
  to tell clean from adversarial activations (the zoo recipe ``detector-network``);
* :class:`KernelDensity` -- Feinman et al. (2017, section 4.1): a Gaussian kernel density
  of the last hidden layer's features of training images of the predicted class; the
  score is the negative log density, differentiable in the input;
* :class:`BayesianUncertainty` -- Feinman et al. (section 4.2): the variance of the
  softmax over T passes with dropout on (Gal and Ghahramani 2016), batched;
* :class:`LogisticCombination` and :class:`Combined` -- Feinman et al. (section 5): a
  logistic regression over the standardised scores, fitted in torch so that its score
  stays differentiable (the adaptive attack needs its gradient);
* :class:`Detected` -- Carlini and Wagner (2017, "bypassing ten detection methods",
  section 3): classifier + detector as one model with an extra "adversarial" logit, so
  every attack of :mod:`coursepkg.attacks` runs against both, unchanged;
* :class:`Evasion` and :func:`evading` -- the view an *untargeted* attack needs on a
  :class:`Detected` model: being detected counts as the true class, so the attack's only
  way to succeed is to fool the classifier *and* stay undetected.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..models import MCDropout

#: Kernel bandwidths of Feinman et al. (their released code: MNIST 1.20, CIFAR-10 0.26);
#: Fashion-MNIST takes MNIST's.
FEINMAN_BANDWIDTH = {"mnist": 1.20, "fashion-mnist": 1.20, "cifar10": 0.26}


def _check_module(obj, name: str) -> None:
    if not isinstance(obj, nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module, got {type(obj).__name__}")


def _blocks(classifier: nn.Module) -> nn.ModuleDict:
    blocks = getattr(classifier, "blocks", None)
    if not isinstance(blocks, nn.ModuleDict):
        raise TypeError("the classifier must be one of the course's block models "
                        "(coursepkg.models.classifier_for), which name their layers")
    return blocks


def features_at(classifier: nn.Module, x: torch.Tensor, layer: str) -> torch.Tensor:
    """The output of block ``layer`` of a block model (the blocks after it are not run)."""
    blocks = _blocks(classifier)
    if layer not in blocks:
        raise ValueError(f"layer {layer!r} is not a block of the classifier; choose one of {list(blocks)}")
    for name, block in blocks.items():
        x = block(x)
        if name == layer:
            return x
    raise AssertionError("unreachable")


def last_hidden_layer(classifier: nn.Module) -> str:
    """The name of the block just before the logits (``fc1`` of SmallCNN)."""
    return list(_blocks(classifier))[-2]


# --------------------------------------------------------------------------------------
# Metzen et al. (2017): a detector subnetwork
# --------------------------------------------------------------------------------------
class DetectorHead(nn.Module):
    """The detector subnetwork of Metzen et al. (2017, section 3.1), scaled to the course's CNN.

    Two 3x3 convolutions with ReLU, a 1x1 convolution to one channel and a global average:
    ``(N, C, H, W)`` activations -> one logit per image (positive: adversarial).
    """

    def __init__(self, channels: int, width: int = 32):
        super().__init__()
        if int(channels) < 1 or int(width) < 1:
            raise ValueError(f"channels and width must be positive, got {channels} and {width}")
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(2 * width, 1, 1),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.dim() != 4:
            raise ValueError("the detector head reads a convolutional layer (N x C x H x W); "
                             f"got shape {tuple(features.shape)}")
        return self.net(features).mean(dim=(1, 2, 3))


class DetectorNetwork(nn.Module):
    """Metzen et al.'s detector: ``score(x) = head(classifier's layer `layer` at x)``.

    The classifier stays frozen; only ``head`` is trained (zoo recipe ``detector-network``).
    """

    def __init__(self, classifier: nn.Module, head: nn.Module, layer: str):
        super().__init__()
        _check_module(classifier, "classifier")
        _check_module(head, "head")
        if layer not in _blocks(classifier):
            raise ValueError(f"layer {layer!r} is not a block of the classifier; "
                             f"choose one of {list(_blocks(classifier))}")
        self.classifier, self.head, self.layer = classifier, head, layer
        self.training = classifier.training  # a wrapper starts in its classifier's mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(features_at(self.classifier, x, self.layer))


# --------------------------------------------------------------------------------------
# Feinman et al. (2017): kernel density and Bayesian uncertainty
# --------------------------------------------------------------------------------------
def _squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``||a_i - b_j||^2`` for every pair (a matmul; differentiable everywhere in ``a``)."""
    return ((a * a).sum(1, keepdim=True) - 2 * a @ b.T + (b * b).sum(1)[None]).clamp_min(0.0)


def gaussian_log_density(features: torch.Tensor, bank: torch.Tensor, bank_labels: torch.Tensor,
                         classes: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """Log of the Gaussian kernel density of ``features`` among the bank's rows of ``classes``.

    Feinman et al. (2017), eq. (1):
    ``KDE(x) = (1/|X_t|) sum_{x_i in X_t} k(phi(x), phi(x_i))`` with the Gaussian kernel
    ``k(u, v) = (2 pi h^2)^(-d/2) exp(-||u - v||^2 / (2 h^2))`` (scikit-learn's
    ``KernelDensity``, which their code used), computed in log space with a masked
    log-sum-exp: one matrix of distances for the whole batch, no loop over classes.
    """
    if bandwidth <= 0:
        raise ValueError(f"bandwidth must be positive, got {bandwidth}")
    d = features.shape[1]
    log_kernel = -_squared_distances(features, bank) / (2 * bandwidth ** 2)
    same = bank_labels[None, :] == classes[:, None]
    log_kernel = log_kernel.masked_fill(~same, float("-inf"))
    counts = same.sum(1)
    if bool((counts == 0).any()):
        raise ValueError("a class has no training feature in the bank; give images of every class")
    norm = 0.5 * d * math.log(2 * math.pi * bandwidth ** 2)
    return torch.logsumexp(log_kernel, dim=1) - counts.to(log_kernel.dtype).log() - norm


class KernelDensity(nn.Module):
    """Feinman et al.'s density detector: ``score(x) = -log KDE_{t(x)}(phi(x))``.

    ``phi`` is the classifier's last hidden layer (the block before the logits), ``t(x)`` the
    class the classifier predicts, and the density is over the features of training images
    of class ``t`` (:func:`gaussian_log_density`).  Adversarial examples that cross into a
    wrong class tend to land far from that class's training data: a low density, a high
    score.  The score is differentiable in ``x`` (for a fixed predicted class), which is
    what Carlini and Wagner's adaptive attack uses.
    """

    def __init__(self, classifier: nn.Module, x_train: torch.Tensor, y_train: torch.Tensor, *,
                 bandwidth: float, layer: str | None = None, batch_size: int = 500):
        super().__init__()
        _check_module(classifier, "classifier")
        if float(bandwidth) <= 0:
            raise ValueError(f"bandwidth must be positive, got {bandwidth}")
        if len(x_train) != len(y_train) or len(x_train) == 0:
            raise ValueError("x_train and y_train must be non-empty and of the same length")
        self.classifier = classifier
        self.layer = last_hidden_layer(classifier) if layer is None else layer
        self.training = classifier.training  # a wrapper starts in its classifier's mode
        self.bandwidth = float(bandwidth)
        device = next(classifier.parameters()).device
        with torch.no_grad():
            bank = torch.cat([self._features(x_train[i:i + batch_size].to(device))[0]
                              for i in range(0, len(x_train), batch_size)])
        self.register_buffer("bank", bank)
        self.register_buffer("bank_labels", y_train.to(device).long())

    def _features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        acts = self.classifier.activations(x)
        return acts[self.layer].flatten(1), next(reversed(acts.values()))

    def log_density(self, x: torch.Tensor, classes: torch.Tensor | None = None) -> torch.Tensor:
        """``log KDE`` of each image among training images of ``classes`` (default: predicted)."""
        features, logits = self._features(x)
        if classes is None:
            classes = logits.argmax(1)
        return gaussian_log_density(features, self.bank, self.bank_labels, classes.to(features.device),
                                    self.bandwidth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -self.log_density(x)


def mc_dropout_uncertainty(model: nn.Module, x: torch.Tensor, samples: int, *,
                           dropout: bool = True) -> torch.Tensor:
    """Feinman et al.'s Bayesian uncertainty (section 4.2) from ``samples`` stochastic passes.

    ``U(x) = (1/T) sum_t p_t^T p_t - pbar^T pbar`` with ``p_t`` the softmax of pass t and
    ``pbar`` their mean (the sum of the per-class variances of the predictive
    distribution).  The T passes run as *one* batch (``x`` repeated T times) with every
    dropout layer sampling (``model.mc_dropout(True)``, Gal and Ghahramani 2016); the
    model's dropout state is restored afterwards.  ``dropout=False`` runs the same passes
    without dropout: then every pass is equal and U is zero.
    """
    _check_module(model, "model")
    if isinstance(samples, bool) or int(samples) != samples or int(samples) < 2:
        raise ValueError(f"samples must be an integer >= 2 (a variance needs two passes), got {samples!r}")
    samples = int(samples)
    layers = [m for m in model.modules() if isinstance(m, MCDropout)]
    before = [m.always_on for m in layers]
    try:
        for m in layers:
            m.always_on = bool(dropout)
        repeated = x.repeat(samples, *([1] * (x.dim() - 1)))
        probs = F.softmax(model(repeated), dim=1).view(samples, len(x), -1)
    finally:
        for m, on in zip(layers, before):
            m.always_on = on
    mean = probs.mean(0)
    return (probs * probs).sum(2).mean(0) - (mean * mean).sum(1)


class BayesianUncertainty(nn.Module):
    """The uncertainty detector: ``score(x) = U(x)`` of :func:`mc_dropout_uncertainty` (random)."""

    def __init__(self, classifier: nn.Module, samples: int):
        super().__init__()
        _check_module(classifier, "classifier")
        if not getattr(classifier, "has_dropout", False):
            raise ValueError("Bayesian uncertainty needs a classifier with dropout, "
                             "e.g. zoo.get('standard', dropout=0.5)")
        if isinstance(samples, bool) or int(samples) != samples or int(samples) < 2:
            raise ValueError(f"samples must be an integer >= 2, got {samples!r}")
        self.classifier, self.samples = classifier, int(samples)
        self.training = classifier.training  # a wrapper starts in its classifier's mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return mc_dropout_uncertainty(self.classifier, x, self.samples)


# --------------------------------------------------------------------------------------
# Feinman et al.: the logistic-regression combination
# --------------------------------------------------------------------------------------
class LogisticCombination(nn.Module):
    """A logistic regression over ``k`` standardised scores: ``w . (s - mean) / std + b``.

    Feinman et al. (2017, section 5) combine density and uncertainty this way.  Written in
    torch (weights as buffers, fitted by :meth:`fit` with L-BFGS) so that the combined score
    stays differentiable for the adaptive attack; returns the logit of P(adversarial).
    """

    def __init__(self, k: int = 2):
        super().__init__()
        if int(k) < 1:
            raise ValueError(f"k must be a positive number of scores, got {k}")
        for name, value in (("mean", torch.zeros(k)), ("std", torch.ones(k)),
                            ("weight", torch.zeros(k)), ("bias", torch.zeros(()))):
            self.register_buffer(name, value)

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        if scores.dim() != 2 or scores.shape[1] != len(self.weight):
            raise ValueError(f"scores must be N x {len(self.weight)}, got shape {tuple(scores.shape)}")
        return ((scores - self.mean) / self.std) @ self.weight + self.bias

    def fit(self, clean: torch.Tensor, adversarial: torch.Tensor, *, l2: float = 1e-3,
            steps: int = 100) -> LogisticCombination:
        """Fit on score rows of clean (label 0) and adversarial (label 1) images; returns self."""
        k = len(self.weight)
        for name, rows in (("clean", clean), ("adversarial", adversarial)):
            if rows.dim() != 2 or rows.shape[1] != k or len(rows) == 0:
                raise ValueError(f"{name} must be a non-empty N x {k} tensor of scores")
        scores = torch.cat([clean, adversarial]).detach().double()
        labels = torch.cat([torch.zeros(len(clean)), torch.ones(len(adversarial))]).double()
        mean, std = scores.mean(0), scores.std(0).clamp_min(1e-12)
        z = (scores - mean) / std
        params = torch.zeros(k + 1, dtype=torch.float64, requires_grad=True)
        optimiser = torch.optim.LBFGS([params], max_iter=steps, line_search_fn="strong_wolfe")

        def closure():
            optimiser.zero_grad()
            logits = z @ params[:k] + params[k]
            loss = F.binary_cross_entropy_with_logits(logits, labels) + l2 * params[:k].pow(2).sum()
            loss.backward()
            return loss

        with torch.enable_grad():
            optimiser.step(closure)
        dtype = self.weight.dtype
        self.mean.copy_(mean.to(dtype))
        self.std.copy_(std.to(dtype))
        self.weight.copy_(params.detach()[:k].to(dtype))
        self.bias.copy_(params.detach()[k].to(dtype))
        return self


class Combined(nn.Module):
    """Several detectors' scores combined by a :class:`LogisticCombination` into one score."""

    def __init__(self, detectors: Sequence[nn.Module], combination: LogisticCombination):
        super().__init__()
        for i, d in enumerate(detectors):
            _check_module(d, f"detectors[{i}]")
        _check_module(combination, "combination")
        if len(detectors) != len(combination.weight):
            raise ValueError(f"{len(detectors)} detectors for a combination of {len(combination.weight)} scores")
        self.detectors = nn.ModuleList(detectors)
        self.combination = combination
        self.training = detectors[0].training if len(detectors) else False

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """The N x k matrix of the detectors' scores."""
        return torch.stack([d(x) for d in self.detectors], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.combination(self.scores(x))


# --------------------------------------------------------------------------------------
# Carlini and Wagner (2017): classifier + detector as one model
# --------------------------------------------------------------------------------------
class Detected(nn.Module):
    """Classifier and detector joined (Carlini and Wagner 2017, "bypassing", section 3).

    ``Detected(classifier, detector, threshold)(x)`` returns ``N x (C + 1)`` logits: the
    classifier's ``C`` logits ``Z(x)``, then one "adversarial" logit

    ``G_adv(x) = max_j Z_j(x) + gain * (score(x) - threshold)``,

    whose lead over the largest class logit, ``G_adv - max_j Z_j``, is zero exactly at the
    threshold.  So the joined model predicts class ``C`` ("adversarial") exactly when the
    detector fires (``score > threshold``) and the classifier's class otherwise, and an
    attack that fools it without landing on class ``C`` has fooled the classifier *and*
    evaded the detector.  The gradient flows through both parts.
    """

    def __init__(self, classifier: nn.Module, detector: nn.Module, threshold: float, *, gain: float = 1.0):
        super().__init__()
        _check_module(classifier, "classifier")
        _check_module(detector, "detector")
        threshold = float(threshold)
        if not math.isfinite(threshold):
            raise ValueError(f"threshold must be finite, got {threshold}")
        if not float(gain) > 0:
            raise ValueError(f"gain must be positive, got {gain}")
        self.classifier, self.detector = classifier, detector
        self.training = classifier.training  # a wrapper starts in its classifier's mode
        self.threshold, self.gain = threshold, float(gain)

    def margin(self, x: torch.Tensor) -> torch.Tensor:
        """``score(x) - threshold``: positive where the detector fires."""
        return self.detector(x) - self.threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.classifier(x)
        adversarial = logits.max(1).values + self.gain * self.margin(x)
        return torch.cat([logits, adversarial[:, None]], dim=1)

    @torch.no_grad()
    def detects(self, x: torch.Tensor) -> torch.Tensor:
        """Per image, whether the detector fires (score strictly above the threshold)."""
        return self.margin(x) > 0

    def extra_repr(self) -> str:
        return f"threshold={self.threshold:.4g}, gain={self.gain}"


class Evasion(nn.Module):
    """The view of a :class:`Detected` model that an untargeted attack on label y needs.

    An untargeted attack succeeds when the prediction is not y -- but on the joined model
    the class "adversarial" is not y either, so the attack could "succeed" by being
    detected.  This view merges the adversarial logit into the true class,
    ``E_y = logsumexp(G_y, G_adv)`` (so ``softmax(E)_y = p_y + p_adv``; the cross-entropy
    is ``-log(p_y + p_adv)``), and keeps the other class logits: being detected now counts
    as correct, and the attack's only way out is to fool the classifier while evading the
    detector (Carlini and Wagner's objective, section 3.1).

    The labels are those of ``x_clean``; each row the attack evaluates takes the label of the
    clean image nearest to it (L2), so attacks that run on subsets of the batch (targeted
    APGD does) work unchanged.  ``max_distance`` is an L2 budget (:func:`evading` sets it to
    twice the radius of the attack's ball, ``2 eps sqrt(d)`` for L-infinity): a
    row farther than that from every clean image cannot have come from the batch, and
    raises instead of silently taking a wrong label.  Within half the smallest distance
    between two clean images of different labels the nearest image's label is provably
    right (triangle inequality); beyond it the look-up is a heuristic.
    """

    def __init__(self, detected: nn.Module, x_clean: torch.Tensor, y: torch.Tensor, *,
                 max_distance: float | None = None):
        super().__init__()
        _check_module(detected, "detected")
        if len(x_clean) != len(y):
            raise ValueError(f"x_clean and y must have the same length, got {len(x_clean)} and {len(y)}")
        if max_distance is not None and not float(max_distance) >= 0:
            raise ValueError(f"max_distance must be >= 0 or None, got {max_distance!r}")
        self.detected = detected
        self.training = detected.training
        self.max_distance = None if max_distance is None else float(max_distance)
        self.register_buffer("anchors", x_clean.detach().flatten(1))
        self.register_buffer("labels", y.detach().long())

    def labels_of(self, x: torch.Tensor) -> torch.Tensor:
        """The label of the clean image nearest to each row of ``x`` (checked against the budget)."""
        with torch.no_grad():
            flat = x.detach().flatten(1).to(self.anchors)
            if flat.shape == self.anchors.shape and torch.equal(flat, self.anchors):
                return self.labels
            nearest, idx = _squared_distances(flat, self.anchors).min(1)
            if self.max_distance is not None:
                far = float(nearest.clamp_min(0).sqrt().max())
                if far > self.max_distance * (1 + 1e-4) + 1e-4:
                    raise ValueError(f"a row is {far:.3f} (L2) from every clean image, beyond the attack's budget "
                                     f"{self.max_distance:.3f}: its label is unknown; attack only rows of x_clean")
            return self.labels[idx]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        joined = self.detected(x)
        y = self.labels_of(x).to(joined.device)[:, None]
        logits, adversarial = joined[:, :-1], joined[:, -1:]
        merged = torch.logsumexp(torch.cat([logits.gather(1, y), adversarial], dim=1), dim=1, keepdim=True)
        return logits.scatter(1, y, merged)


def _l2_budget(x: torch.Tensor, kwargs: dict) -> float | None:
    """Twice the L2 radius of the attack's ball (``eps * sqrt(d)`` for L-infinity): room for
    probes just outside the ball (finite differences); None when the attack is unbounded."""
    eps = kwargs.get("eps")
    if eps is None:
        return None  # e.g. C&W L2: no ball, no check
    norm = str(kwargs.get("norm", "linf")).lower()
    if norm in ("linf", "inf"):
        return 2 * float(eps) * math.sqrt(x[0].numel())
    return 2 * float(eps) if norm in ("l2", "2") else None


def evading(attack: Callable, *, view: nn.Module | None = None, **fixed) -> Callable:
    """``attack`` run on the :class:`Evasion` view of the model it is handed (or of ``view``).

    ``view`` is for a random detector: pass ``EOT(detected, n)`` to average the attack's
    gradient over n draws of the dropout masks, while the real ``detected`` judges the result.
    """
    if not callable(attack):
        raise TypeError("attack must be callable, e.g. coursepkg.attacks.pgd")
    if view is not None:
        _check_module(view, "view")

    def evasion_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, **kwargs) -> torch.Tensor:
        merged = {**fixed, **kwargs}
        seen = Evasion(model if view is None else view, x, y, max_distance=_l2_budget(x, merged))
        return attack(seen, x, y, **merged)

    evasion_attack.__name__ = f"{getattr(attack, '__name__', 'attack')}_evading"
    return evasion_attack


# --------------------------------------------------------------------------------------
# Carlini and Wagner (2017, section 6): the kernel density of the *target* class
# --------------------------------------------------------------------------------------
class TargetClassDensity(nn.Module):
    """A :class:`KernelDensity` score taken for a fixed class per image:
    ``-log KDE_t(phi(x))`` with ``t = classes[i]``, not the class the classifier predicts.

    The detector's own score switches density whenever the prediction changes, a jump an
    attack's gradient cannot see.  An attacker aiming at class ``t`` wants ``x`` classified
    as ``t`` *and* dense among ``t``'s training features, and ``-log KDE_t`` is a smooth
    loss for the second; once the classifier predicts ``t`` it is the detector's score.
    """

    def __init__(self, density: KernelDensity, classes: torch.Tensor):
        super().__init__()
        _check_module(density, "density")
        self.density = density
        self.training = density.training
        self.register_buffer("classes", classes.detach().long())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = len(self.classes)
        if n == 0 or len(x) % n:
            raise ValueError(f"{len(x)} images for {n} target classes")
        # EOT stacks its draws: rows k*n .. (k+1)*n - 1 are the n images again
        return -self.density.log_density(x, classes=self.classes.repeat(len(x) // n))


def _with_target_density(detector: nn.Module, classes: torch.Tensor) -> nn.Module:
    """``detector`` with every :class:`KernelDensity` in it scored for ``classes``."""
    if isinstance(detector, KernelDensity):
        return TargetClassDensity(detector, classes)
    if isinstance(detector, Combined):
        return Combined([_with_target_density(d, classes) for d in detector.detectors],
                        detector.combination)
    return detector


def has_density(detector: nn.Module) -> bool:
    """Whether ``detector`` is, or combines, a :class:`KernelDensity`."""
    if isinstance(detector, Combined):
        return any(has_density(d) for d in detector.detectors)
    return isinstance(detector, KernelDensity)


def target_class_density_attack(attack: Callable, *, targets: int = 1, eot: int | None = None,
                                **fixed) -> Callable:
    """Carlini and Wagner's attack on the kernel density (2017, section 6), for a
    :class:`Detected` model whose detector is or combines a :class:`KernelDensity`.

    For each of the ``targets`` classes the classifier ranks highest after the true one, in
    turn: ``attack`` (targeted, e.g. :func:`coursepkg.attacks.pgd`, with the ``fixed``
    keyword arguments) runs on a copy of the joined model whose density is that of the
    target class (:class:`TargetClassDensity`) -- through ``EOT`` of ``eot`` draws for a
    random detector.  An image keeps the first example that the *real* joined model
    classifies as neither its label nor "adversarial": fooled and undetected.
    """
    from ..adaptive import EOT

    if not callable(attack):
        raise TypeError("attack must be callable, e.g. coursepkg.attacks.pgd")
    if isinstance(targets, bool) or int(targets) != targets or int(targets) < 1:
        raise ValueError(f"targets must be a positive integer, got {targets!r}")

    def target_density_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                              **kwargs) -> torch.Tensor:
        if not isinstance(model, Detected) or not has_density(model.detector):
            raise TypeError("the target-class density attack needs a Detected model with a "
                            "KernelDensity detector (alone or in a Combined)")
        with torch.no_grad():
            logits = model.classifier(x).clone()
        logits[torch.arange(len(y)), y] = float("-inf")
        ranked = logits.argsort(1, descending=True)
        best, done = x.detach().clone(), torch.zeros(len(x), dtype=torch.bool, device=x.device)
        adversarial = logits.shape[1]  # the joined model's last class
        for rank in range(min(int(targets), ranked.shape[1] - 1)):
            todo = (~done).nonzero().squeeze(1)
            if len(todo) == 0:
                break
            t = ranked[todo, rank]
            view = Detected(model.classifier, _with_target_density(model.detector, t),
                            model.threshold, gain=model.gain)
            seen = view if eot is None else EOT(view, int(eot))
            adv = attack(seen, x[todo], y[todo], **{**fixed, **kwargs, "target": t})
            with torch.no_grad():
                answer = model(adv).argmax(1)
            ok = (answer != y[todo]) & (answer != adversarial)
            best[todo[ok]] = adv[ok].detach()
            done[todo[ok]] = True
        return best

    target_density_attack.__name__ = f"{getattr(attack, '__name__', 'attack')}_target_density"
    return target_density_attack
