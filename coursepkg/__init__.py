"""coursepkg: the companion package of the course *Defending models against adversarial examples*.

Everything the book runs lives here, tested like any library:

* :mod:`coursepkg.config`  -- the device and the two budget profiles (``quick``, ``full``);
* :mod:`coursepkg.data`    -- Fashion-MNIST (default), MNIST and CIFAR-10, offline first;
* :mod:`coursepkg.models`  -- small classifiers mapping images in [0, 1] to logits;
* :mod:`coursepkg.train`   -- one training loop with a pluggable per-batch loss;
* :mod:`coursepkg.zoo`     -- trains each recipe once and caches it;
* :mod:`coursepkg.attacks` -- attacks as plain functions over batches;
* :mod:`coursepkg.evaluate` -- accuracy, robust accuracy and the gradient-masking checks.
"""

__version__ = "0.1.0"
