"""Defences by gradient regularisation: contractive penalty, double backpropagation and
defensive distillation.

Chapter 4 of the book.  The three share one idea -- make the gradient of the model's output
with respect to its input small, so that a small step in the input moves the output little
-- and, like every defence of the course, each is a *loss* for the one training loop,
:func:`coursepkg.train.train`:

=========================================  ===========================================
factory                                    paper
=========================================  ===========================================
:func:`contractive_loss`                   Gu and Rigazio 2015, eq. (5): deep contractive network
:func:`input_gradient_loss`                Drucker and LeCun 1992; Ross and Doshi-Velez 2018
:func:`temperature_loss`                   Papernot et al. 2016, sec. IV: the teacher at T
:func:`distillation_loss`                  Papernot et al. 2016, sec. IV: the student at T
=========================================  ===========================================

The penalties themselves are plain functions of ``(model, x, ...)`` --
:func:`layerwise_jacobian_norms`, :func:`contractive_penalty`,
:func:`input_gradient_penalty`, :func:`soft_labels` -- so the tests compare them with
autograd's full Jacobian and with finite differences.  :class:`Temperature` divides a
model's logits by T: the view the distillation losses train through, and the view an
attacker uses on a distilled network (Carlini and Wagner 2016).  The distilled network is
deployed at T = 1, that is, as it is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..models import BlockModel, MCDropout, Normalize

BatchLoss = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]

__all__ = [
    "layerwise_jacobian_norms", "contractive_penalty", "contractive_loss",
    "input_gradient_penalty", "input_gradient_loss", "Temperature", "soft_labels",
    "temperature_loss", "distillation_loss", "DUAL_NORM",
]

#: the norm of the input gradient that bounds a first-order change of the loss under
#: an Lp attack: the dual norm (L∞ attack -> l1 gradient norm, L2 -> l2)
DUAL_NORM = {"linf": "l1", "l2": "l2"}


# --------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------
def _check_weight(name: str, value: float) -> float:
    value = float(value)
    if not (math.isfinite(value) and value >= 0.0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return value


def _check_temperature(temperature: float) -> float:
    temperature = float(temperature)
    if not (math.isfinite(temperature) and temperature > 0.0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
    return temperature


# --------------------------------------------------------------------------------------
# The layer-wise contractive penalty (Gu and Rigazio 2015)
# --------------------------------------------------------------------------------------
_ACTIVATIONS = (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.Identity)


def _derivative(activation: nn.Module, pre: torch.Tensor) -> torch.Tensor:
    """sigma'(a) of an elementwise activation at its pre-activation ``pre``."""
    if isinstance(activation, nn.ReLU):
        return (pre > 0).to(pre.dtype)  # autograd's convention: ReLU'(0) = 0
    if isinstance(activation, nn.Tanh):
        return 1 - torch.tanh(pre) ** 2
    if isinstance(activation, nn.Sigmoid):
        s = torch.sigmoid(pre)
        return s * (1 - s)
    return torch.ones_like(pre)


@dataclass
class _Layer:
    """One parametrised layer ``h = pool(sigma(W s(h_prev) + b))``: ``s`` a per-channel scale
    folded in from a Normalize before it, ``pool`` an optional max pool."""

    name: str
    affine: nn.Module  # nn.Linear or nn.Conv2d
    activation: nn.Module
    pool: nn.MaxPool2d | None
    normalize: Normalize | None  # a Normalize folded into this layer's input

    @property
    def scale(self) -> torch.Tensor | None:
        return None if self.normalize is None else 1.0 / self.normalize.std.flatten()


def _flat_modules(block: nn.Module) -> list[nn.Module]:
    if isinstance(block, nn.Sequential):
        return [m for child in block for m in _flat_modules(child)]
    return [block]


def _parse_layers(model: nn.Module) -> list[_Layer] | None:
    """The model as a chain of :class:`_Layer`, or None when it is not such a chain.

    Accepts a :class:`~coursepkg.models.BlockModel` (or an ``nn.Sequential``) built from
    Normalize, Flatten, Linear/Conv2d, an elementwise activation (ReLU, Tanh, Sigmoid),
    MaxPool2d and dropout (identity: the penalty is that of the deployed network).
    """
    if isinstance(model, BlockModel):
        modules = [m for block in model.blocks.values() for m in _flat_modules(block)]
    elif isinstance(model, nn.Sequential):
        modules = _flat_modules(model)
    else:
        return None
    layers: list[_Layer] = []
    normalize = None
    i = 0
    while i < len(modules):
        m = modules[i]
        if isinstance(m, Normalize):
            if layers or normalize is not None:
                return None
            normalize = m
            i += 1
        elif isinstance(m, (nn.Flatten, nn.Dropout, MCDropout)):
            i += 1
        elif isinstance(m, (nn.Linear, nn.Conv2d)):
            activation, pool = nn.Identity(), None
            j = i + 1
            if j < len(modules) and isinstance(modules[j], _ACTIVATIONS):
                activation, j = modules[j], j + 1
            while j < len(modules) and isinstance(modules[j], (nn.Dropout, MCDropout)):
                j += 1
            if j < len(modules) and isinstance(modules[j], nn.MaxPool2d):
                pool, j = modules[j], j + 1
            layers.append(_Layer(f"layer{len(layers) + 1}", m, activation, pool, normalize))
            normalize, i = None, j
        else:
            return None
    return layers or None


def _row_norms_squared(layer: _Layer, h_prev: torch.Tensor) -> torch.Tensor:
    """``||W_o||^2`` for every output unit o: the squared norm of the row of the layer's
    (input-scaled) weight matrix that computes unit o, shaped like one output map."""
    w = layer.affine.weight
    if isinstance(layer.affine, nn.Linear):
        if layer.scale is not None:  # Normalize then Flatten: input feature f has channel f // (H W)
            w = w * layer.scale.repeat_interleave(w.shape[1] // len(layer.scale)).to(w)
        return (w ** 2).sum(1)
    if layer.scale is not None:
        w = w * layer.scale.view(1, -1, 1, 1).to(w)
    conv = layer.affine
    ones = torch.ones((1,) + tuple(h_prev.shape[1:]), device=w.device, dtype=w.dtype)
    # each output unit sees the kernel at its position; padding contributes no weight
    return F.conv2d(ones, w ** 2, None, conv.stride, conv.padding, conv.dilation, conv.groups)[0]


def _forward_with_norms(layers: list[_Layer], x: torch.Tensor):
    """The logits and, per layer, the per-example ``||d h_j / d h_{j-1}||_F^2`` (one pass)."""
    h = x
    norms = {}
    for layer in layers:
        inp = h if layer.normalize is None else layer.normalize(h)
        if isinstance(layer.affine, nn.Linear):
            inp = inp.flatten(1)
        pre = layer.affine(inp)
        d2 = _derivative(layer.activation, pre) ** 2 * _row_norms_squared(layer, inp)
        out = layer.activation(pre)
        if layer.pool is not None:
            out, idx = F.max_pool2d(out, layer.pool.kernel_size, layer.pool.stride, layer.pool.padding,
                                    layer.pool.dilation, layer.pool.ceil_mode, return_indices=True)
            # output unit o copies input unit idx[o]: its Jacobian row is that unit's row
            d2 = d2.flatten(2).gather(2, idx.flatten(2))
        norms[layer.name] = d2.flatten(1).sum(1)
        h = out
    return h, norms


def _projection_norms(model: nn.Module, x: torch.Tensor, samples: int, create_graph: bool):
    """Per example, an unbiased estimate of ``||d logits / d x||_F^2`` by random projections:
    ``E_v ||J^T v||^2`` over ``v ~ N(0, I)`` (Hutchinson), with ``samples`` draws."""
    x = x.detach().requires_grad_(True)
    logits = model(x)
    total = torch.zeros(len(x), device=x.device, dtype=x.dtype)
    for _ in range(samples):
        v = torch.randn_like(logits)
        (g,) = torch.autograd.grad(logits, x, v, create_graph=create_graph, retain_graph=True)
        total = total + g.flatten(1).pow(2).sum(1)
    return logits, {"network": total / samples}


def layerwise_jacobian_norms(model: nn.Module, x: torch.Tensor, *, method: str = "auto",
                             samples: int = 4, create_graph: bool = True):
    """The logits of ``x`` and, per layer j, ``||d h_j / d h_{j-1}||_F^2`` per example.

    ``method="exact"`` (the default, ``"auto"``, whenever the model allows it) uses the
    closed form of Gu and Rigazio (2015, sec. 3) for a layer ``h = sigma(W h' + b)`` with an
    elementwise activation: ``J = diag(sigma'(a)) W``, so

    ``||J||_F^2 = sum_o sigma'(a_o)^2 ||W_o||^2``,

    ``W_o`` the row of the weight matrix that computes unit o.  A convolution is such a
    layer: its row for output unit (c, p) is channel c's kernel placed at p, restricted to
    the in-bounds pixels, so the squared row norms are the convolution of an all-ones input
    with the squared kernel.  A max pool after the activation selects one unit per output,
    whose row it copies; a Normalize before the first layer scales its input channels by
    1/std; Flatten and dropout (off when deployed) change no norm.  The first layer's
    Jacobian is thus with respect to the pixels, and the last (the logits) is ``W``.

    ``method="projection"`` (used by ``"auto"`` for other models, e.g. the ResNet) returns
    one entry, ``"network"``: an unbiased random-projection estimate of the whole network's
    ``||d logits / d x||_F^2`` with ``samples`` draws.  ``create_graph`` keeps it
    differentiable (for training).
    """
    if method not in ("auto", "exact", "projection"):
        raise ValueError(f"method must be 'auto', 'exact' or 'projection', got {method!r}")
    layers = _parse_layers(model) if method != "projection" else None
    if method == "exact" and layers is None:
        raise TypeError("the exact contractive penalty needs a chain of Linear/Conv2d layers with "
                        "elementwise activations; use method='projection' for this model")
    if layers is None:
        if not (isinstance(samples, int) and samples >= 1):
            raise ValueError(f"samples must be a positive integer, got {samples!r}")
        return _projection_norms(model, x, samples, create_graph)
    return _forward_with_norms(layers, x)


def contractive_penalty(model: nn.Module, x: torch.Tensor, *, method: str = "auto",
                        include_output: bool = True) -> torch.Tensor:
    """The mean over the batch of ``sum_j ||d h_j / d h_{j-1}||_F^2`` (Gu and Rigazio 2015,
    eq. 5, every layer weighted alike); ``include_output=False`` leaves out the logits layer
    (whose Jacobian, its weight matrix, does not depend on x)."""
    _, norms = layerwise_jacobian_norms(model, x, method=method)
    if not include_output and len(norms) > 1:
        norms = dict(list(norms.items())[:-1])
    return torch.stack(list(norms.values())).sum(0).mean()


def contractive_loss(weight: float, *, method: str = "auto", include_output: bool = True) -> BatchLoss:
    """A deep contractive network's loss (Gu and Rigazio 2015, eq. 5):

    ``L(x, y) + weight * sum_j ||d h_j / d h_{j-1}||_F^2``,

    the cross-entropy and the layer-wise contractive penalty of
    :func:`layerwise_jacobian_norms`, computed in the same forward pass as the logits.
    """
    weight = _check_weight("weight", weight)

    def loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits, norms = layerwise_jacobian_norms(model, x, method=method)
        if not include_output and len(norms) > 1:
            norms = dict(list(norms.items())[:-1])
        penalty = torch.stack(list(norms.values())).sum(0).mean()
        return F.cross_entropy(logits, y) + weight * penalty

    return loss


# --------------------------------------------------------------------------------------
# Input-gradient regularisation: double backpropagation
# --------------------------------------------------------------------------------------
def _check_norm(norm: str) -> str:
    if norm not in ("l1", "l2"):
        raise ValueError(f"norm must be 'l1' (the dual of an L-infinity attack) or 'l2', got {norm!r}")
    return norm


def input_gradient_penalty(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, norm: str = "l1",
                           power: int = 1, create_graph: bool = True, return_logits: bool = False):
    """Per example, ``||grad_x L(x, y)||_q ** power`` with L the cross-entropy.

    ``norm="l1"`` is the dual norm of an L-infinity attack: to first order
    ``max_{||d||_inf <= eps} L(x + d) = L(x) + eps ||grad_x L||_1``, so ``power=1`` with
    weight eps is the linearised worst-case loss (Finlay and Oberman 2019, sec. 2);
    ``norm="l2"`` is the L2 case, and ``power=2`` with it the squared penalty of Drucker
    and LeCun (1992) and Ross and Doshi-Velez (2018).  The gradient is
    taken with ``create_graph=True`` so the penalty can itself be differentiated with
    respect to the weights: double backpropagation.  A model that ignores its input has
    penalty zero.  With ``return_logits`` also returns the logits of x (same forward pass).
    """
    _check_norm(norm)
    if power not in (1, 2):
        raise ValueError(f"power must be 1 or 2, got {power!r}")
    with torch.enable_grad():  # the input gradient is needed even under no_grad
        x = x.detach().requires_grad_(True)
        logits = model(x)
        per_example = F.cross_entropy(logits, y, reduction="none")
        (grad,) = torch.autograd.grad(per_example.sum(), x, create_graph=create_graph, allow_unused=True)
    if grad is None:  # the model ignores x
        grad = torch.zeros_like(x)
    g = grad.flatten(1)
    if norm == "l1":
        value = g.abs().sum(1) ** power
    else:  # the squared norm needs no square root (whose derivative is infinite at 0)
        squared = g.pow(2).sum(1)
        root = torch.where(squared > 0, squared.clamp_min(1e-30).sqrt(), torch.zeros_like(squared))
        value = squared if power == 2 else root
    return (value, logits) if return_logits else value


def input_gradient_loss(weight: float, *, norm: str = "l1", power: int = 1) -> BatchLoss:
    """Input-gradient regularisation by double backpropagation (Drucker and LeCun 1992;
    Ross and Doshi-Velez 2018, eq. 4; Finlay and Oberman 2019 for the dual norm):

    ``L(x, y) + weight * mean_i ||grad_x L(x_i, y_i)||_q ** power``,

    the penalty of :func:`input_gradient_penalty`.  With ``norm="l1"``, ``power=1`` and
    ``weight=eps`` it is the first-order approximation of the adversarial loss under an
    L-infinity attack of budget eps.

    One forward pass; two backward passes in training (the penalty's gradient is taken
    through the input gradient), so a step costs two to three standard ones.
    """
    weight = _check_weight("weight", weight)
    _check_norm(norm)
    if power not in (1, 2):
        raise ValueError(f"power must be 1 or 2, got {power!r}")

    def loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        penalty, logits = input_gradient_penalty(model, x, y, norm=norm, power=power, return_logits=True)
        return F.cross_entropy(logits, y) + weight * penalty.mean()

    return loss


# --------------------------------------------------------------------------------------
# Defensive distillation (Papernot et al. 2016)
# --------------------------------------------------------------------------------------
class Temperature(nn.Module):
    """``model(x) / T``: a network's softmax at temperature T.

    Defensive distillation trains through this view and deploys the bare network, that is,
    at T = 1 (Papernot et al. 2016, sec. IV).  Attacking ``Temperature(distilled, T)``
    undoes the deployment's scaling of the logits (Carlini and Wagner 2016).
    """

    def __init__(self, model: nn.Module, temperature: float):
        super().__init__()
        self.model = model
        self.temperature = _check_temperature(temperature)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) / self.temperature

    def extra_repr(self) -> str:
        return f"temperature={self.temperature:g}"


@torch.no_grad()
def soft_labels(teacher: nn.Module, x: torch.Tensor, temperature: float) -> torch.Tensor:
    """The teacher's class probabilities at temperature T, ``softmax(Z(x) / T)``, in eval mode."""
    temperature = _check_temperature(temperature)
    was_training = teacher.training
    teacher.eval()
    try:
        return F.softmax(teacher(x) / temperature, dim=1)
    finally:
        teacher.train(was_training)


def temperature_loss(temperature: float) -> BatchLoss:
    """The teacher's loss: the cross-entropy of ``softmax(Z(x) / T)`` against the labels."""
    temperature = _check_temperature(temperature)

    def loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model(x) / temperature, y)

    return loss


def distillation_loss(teacher: nn.Module, temperature: float) -> BatchLoss:
    """The student's loss: the cross-entropy of ``softmax(Z(x) / T)`` against the teacher's
    soft labels ``softmax(Z_teacher(x) / T)`` (Papernot et al. 2016, sec. IV.B); the true
    labels are not used."""
    temperature = _check_temperature(temperature)
    if not isinstance(teacher, nn.Module):
        raise TypeError("teacher must be a trained nn.Module (e.g. zoo.get('distillation_teacher'))")

    def loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        target = soft_labels(teacher, x, temperature)
        log_p = F.log_softmax(model(x) / temperature, dim=1)
        return -(target * log_p).sum(1).mean()

    return loss
