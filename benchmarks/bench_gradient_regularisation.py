"""The training cost of every recipe of chapter 4, relative to standard training.

One *training step* is one call of the recipe's loss on a batch of the profile's size, its
backward pass and an Adam step, on a fresh network (the student's step includes its
teacher's forward pass; the teacher is an untrained network of the same architecture, as
the time does not depend on its weights).  The recipes take turns, round after round, so a
slow spell of a shared machine hits all of them; each reports the median over rounds.
Beside it: the training seconds the zoo recorded for the cached model, if there is one
(they depend on what else the machine was doing when it trained).

Run ``OMP_NUM_THREADS=1 python benchmarks/bench_gradient_regularisation.py`` (``--quick``
for a smoke run); it prints a Markdown table and rewrites the section "Gradient
regularisation" of ``benchmarks/RESULTS.md``.  Never enforced by a test.
"""

from __future__ import annotations

import argparse
import statistics

import torch

from coursepkg import zoo
from coursepkg.config import device as default_device
from coursepkg.config import profile
from coursepkg.data import dataset_info, load_dataset, subset
from coursepkg.defences import gradient_regularisation as gr
from coursepkg.models import classifier_for
from coursepkg.recipes.gradient_regularisation import training_loss
from coursepkg.train import cross_entropy_loss

from _timing import machine, time_once, write_section

RECIPES = ["standard", "contractive", "input_gradient", "distillation_teacher", "distillation_student"]


def losses(info, teacher):
    made = {"standard": cross_entropy_loss,
            "distillation_student": gr.distillation_loss(teacher, 100.0)}
    for name in ("contractive", "input_gradient", "distillation_teacher"):
        made[name] = training_loss(name, info)
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds, no RESULTS.md update")
    args = parser.parse_args()
    rounds = 2 if args.quick else 9
    p, dev = profile(), default_device()
    info = dataset_info("fashion-mnist")
    x, y = subset(*load_dataset(info.name, "train"), p.batch_size)
    x, y = x.to(dev), y.to(dev)
    torch.manual_seed(0)
    teacher = classifier_for(info, width=16).to(dev).eval()
    made = losses(info, teacher)
    nets = {n: classifier_for(info, width=16).to(dev).train() for n in RECIPES}
    optimisers = {n: torch.optim.Adam(nets[n].parameters(), lr=p.lr) for n in RECIPES}
    times: dict[str, list[float]] = {n: [] for n in RECIPES}

    def step(n):
        value = made[n](nets[n], x, y)
        optimisers[n].zero_grad()
        value.backward()
        optimisers[n].step()

    for round_ in range(rounds + 1):  # round 0 warms up
        for n in RECIPES:
            seconds = time_once(lambda: step(n), dev)
            if round_:
                times[n].append(seconds)
    base = statistics.median(times["standard"])
    lines = ["| recipe | one training step (ms) | × standard | zoo training seconds (images × epochs) |",
             "|---|---|---|---|"]
    for n in RECIPES:
        median = statistics.median(times[n])
        facts = zoo.get(n).zoo_facts if zoo.cached(n) else None
        trained = f"{facts['seconds']:.0f} ({facts['examples']} × {facts['epochs']})" if facts else "not trained"
        lines.append(f"| `{n}` | {1000 * median:.0f} | {median / base:.2f} | {trained} |")
    table = "\n".join(lines)
    print(table)
    if not args.quick:
        text = (f"## Gradient regularisation\n\nOne training step of each recipe of chapter 4 (batch "
                f"{p.batch_size}, profile {p.name}), median of {rounds} interleaved rounds, by "
                f"`benchmarks/bench_gradient_regularisation.py` on {machine(dev)}.\n\n{table}\n\n"
                "The input-gradient penalty's double backward pass costs two to three standard steps; "
                "the exact contractive penalty adds one convolution of the squared kernels per layer; "
                "the student's step adds its teacher's forward pass.\n")
        write_section("Gradient regularisation", text)


if __name__ == "__main__":
    main()
