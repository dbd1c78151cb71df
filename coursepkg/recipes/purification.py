"""Recipes of the chapter "Purification": ``pixelcnn``, the generative model of PixelDefend.

The PixelCNN (:class:`coursepkg.defences.pixelcnn.PixelCNN`) is trained by maximum
likelihood -- the mean negative log-likelihood of the training images, a 256-way
cross-entropy per pixel (van den Oord et al. 2016) -- with the course's one training loop.
Its budget is ``profile().pixelcnn_train_subset`` images for ``profile().pixelcnn_epochs``
epochs.  Labels are not used: PixelDefend's generative model never sees a class.
"""

from __future__ import annotations

import math

from ..data import load_dataset, subset
from ..defences.pixelcnn import PixelCNN
from ..train import train
from ..zoo import register


def pixelcnn_loss(model, x, y, *, pixel_fraction: float = 1.0):
    """Maximum likelihood: the mean over the batch of ``-log p(x)`` per pixel, in nats (``y`` unused).

    With ``pixel_fraction < 1`` the likelihood is estimated, without bias, from that
    fraction of the pixel positions (:meth:`PixelCNN.sampled_nll`), which makes a CPU
    training step about twice as fast at a quarter of the positions.
    """
    nll = model.nll(x) if pixel_fraction >= 1.0 else model.sampled_nll(x, pixel_fraction)
    return nll.mean() / x[0].numel()


@register("pixelcnn", build=lambda info, channels, layers, first_kernel, **_:
          PixelCNN(info, channels=channels, layers=layers, first_kernel=first_kernel),
          defaults={"channels": 16, "layers": 4, "first_kernel": 5, "loss_pixel_fraction": 0.25},
          uses=("pixelcnn_train_subset", "pixelcnn_epochs", "batch_size", "lr"))
def fit_pixelcnn(model, info, profile, device, *, seed=0, loss_pixel_fraction=1.0, **hp):
    """A PixelCNN trained by maximum likelihood on the profile's PixelCNN training subset."""
    x, y = load_dataset(info.name, "train")
    x, y = subset(x, y, profile.pixelcnn_train_subset, seed=seed)

    def loss(model, xb, yb):
        return pixelcnn_loss(model, xb, yb, pixel_fraction=loss_pixel_fraction)

    log = train(model, x, y, loss, epochs=profile.pixelcnn_epochs, batch_size=profile.batch_size,
                lr=profile.lr, seed=seed, device=device, desc=f"PixelCNN {info.name}")
    facts = log.as_dict()
    facts["train_bits_per_dim_last_epoch"] = facts["epoch_loss"][-1] / math.log(2)
    return facts
