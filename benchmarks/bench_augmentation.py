"""The training cost of every recipe of chapter 2, relative to standard training.

One *training step* is one call of the recipe's loss (``coursepkg.recipes.augmentation.training_loss``)
on a batch of the profile's size, its backward pass and an Adam step, on a fresh network;
the recipes take turns, and each reports the median over rounds.  Beside it: the training
seconds the zoo recorded for the cached model, if there is one (they depend on what else the
machine was doing when it trained).  Prints a Markdown table for ``benchmarks/RESULTS.md``::

    OMP_NUM_THREADS=1 python benchmarks/bench_augmentation.py
"""

from __future__ import annotations

import os
import statistics
import time

import torch

from coursepkg import zoo
from coursepkg.config import profile
from coursepkg.data import dataset_info, load_dataset, subset
from coursepkg.models import classifier_for
from coursepkg.recipes.augmentation import training_loss

RECIPES = ["standard", "fgsm_training", "rfgsm_training", "fast_fgsm_training", "pgd_training",
           "logit_pairing", "trades"]
ROUNDS = 7


def main() -> None:
    p = profile()
    info = dataset_info("fashion-mnist")
    x, y = subset(*load_dataset(info.name, "train"), p.batch_size)
    nets = {n: classifier_for(info, width=16).train() for n in RECIPES}
    losses = {n: training_loss(n, info, p) for n in RECIPES}
    optimisers = {n: torch.optim.Adam(nets[n].parameters(), lr=p.lr) for n in RECIPES}
    times: dict[str, list[float]] = {n: [] for n in RECIPES}
    for round_ in range(ROUNDS + 1):  # round 0 warms up
        for n in RECIPES:
            start = time.perf_counter()
            value = losses[n](nets[n], x, y)
            optimisers[n].zero_grad()
            value.backward()
            optimisers[n].step()
            if round_:
                times[n].append(time.perf_counter() - start)
    base = statistics.median(times["standard"])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), load {os.getloadavg()[0]:.1f}, "
          f"profile {p.name}, batch {p.batch_size}, adv_train_steps {p.adv_train_steps}")
    print("| recipe | one training step (ms) | × standard | zoo training seconds (images × epochs) |")
    print("|---|---|---|---|")
    for n in RECIPES:
        step = statistics.median(times[n])
        facts = zoo.get(n).zoo_facts if zoo.cached(n) else None
        trained = f"{facts['seconds']:.0f} ({facts['examples']} × {facts['epochs']})" if facts else "not trained"
        print(f"| `{n}` | {1000 * step:.0f} | {step / base:.2f} | {trained} |")


if __name__ == "__main__":
    main()
