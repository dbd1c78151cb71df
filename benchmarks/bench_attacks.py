"""Speed of the attacks against the least work they could do.

1. PGD against a bare loop: ``pgd(model, x, y, steps=K)`` is timed against K iterations of
   forward, cross-entropy and a backward pass to the input alone -- no projection, no
   bookkeeping -- on the same model and batch.  The ratio is PGD's overhead (goal: <= 1.03).
2. SPSA's batching: the same SPSA run with all of an iteration's samples in one forward
   pass (the default) and with one sample per pass (a Python loop over samples).

Run ``OMP_NUM_THREADS=1 python benchmarks/bench_attacks.py`` (``--quick`` for a smoke
run); it prints a table and rewrites the section "Attacks" of ``benchmarks/RESULTS.md``.
Never enforced by a test: speed depends on the machine.
"""

from __future__ import annotations

import argparse
import statistics

import torch
import torch.nn.functional as F

from coursepkg.attacks import pgd, spsa
from coursepkg.attacks.spsa import MAX_IMAGES_PER_PASS
from coursepkg.config import device as default_device
from coursepkg.models import SmallCNN

from _timing import interleaved, machine, write_section

def bare_loop(model, x, y, steps: int, step_size: float) -> torch.Tensor:
    """The floor PGD is measured against: forward, loss, input gradient, a sign step."""
    x_adv = x.clone().requires_grad_(True)
    for _ in range(steps):
        loss = F.cross_entropy(model(x_adv), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x_adv)
        with torch.no_grad():
            x_adv.add_(grad.sign_(), alpha=step_size)
    return x_adv.detach()


def bench_pgd(dev, batch: int, steps: int, repeats: int) -> dict:
    torch.manual_seed(0)
    model = SmallCNN("fashion-mnist", width=16).to(dev).eval()  # the zoo's architecture
    for p in model.parameters():
        p.requires_grad_(False)  # the bare loop gets the same frozen-parameter advantage PGD takes
    x = torch.rand(batch, 1, 28, 28, device=dev)
    y = torch.randint(0, 10, (batch,), device=dev)
    eps = 0.1
    step_size = 2.5 * eps / steps
    bare, attack = interleaved(lambda: bare_loop(model, x, y, steps, step_size),
                                lambda: pgd(model, x, y, eps=eps, steps=steps, restarts=1), dev, repeats)
    b, a = statistics.median(bare), statistics.median(attack)
    return {"batch": batch, "steps": steps, "bare_s": b, "pgd_s": a, "ratio": a / b,
            "ratio_min": min(attack) / min(bare)}


def bench_spsa(dev, batch: int, samples: int, iters: int, repeats: int) -> dict:
    torch.manual_seed(0)
    model = SmallCNN("fashion-mnist", width=16).to(dev).eval()
    x = torch.rand(batch, 1, 28, 28, device=dev)
    y = torch.randint(0, 10, (batch,), device=dev)
    run = dict(eps=0.1, iters=iters, samples=samples)
    batched, looped = interleaved(lambda: spsa(model, x, y, **run),
                                   lambda: spsa(model, x, y, samples_per_pass=1, **run), dev, repeats)
    b, l_ = statistics.median(batched), statistics.median(looped)
    limit = MAX_IMAGES_PER_PASS.get(dev.type, 2048)
    return {"batch": batch, "samples": samples, "iters": iters, "batched_s": b, "loop_s": l_,
            "per_pass": 2 * batch * max(1, min(samples, limit // (2 * batch))),
            "speed_up": l_ / b}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: small batch, few repeats")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args()
    dev = default_device()
    repeats = 2 if args.quick else 7
    pgd_rows = [bench_pgd(dev, batch, steps, repeats)
                for batch, steps in ([(64, 5)] if args.quick else [(128, 20), (512, 20)])]
    spsa_row = bench_spsa(dev, 16 if args.quick else 32, 64, 2 if args.quick else 4, max(2, repeats // 2))
    lines = ["## Attacks", "",
             f"Machine: {machine(dev)}.  Command: `OMP_NUM_THREADS=1 python benchmarks/bench_attacks.py`"
             f"{' --quick' if args.quick else ''}; medians of {repeats} interleaved runs.", "",
             "**PGD against a bare forward-and-backward loop** (SmallCNN width 16, Fashion-MNIST-shaped "
             "input, parameters frozen in both, one restart):", "",
             "| batch | steps | bare loop (s) | `pgd` (s) | ratio (median) | ratio (best runs) |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['batch']} | {r['steps']} | {r['bare_s']:.3f} | {r['pgd_s']:.3f} | {r['ratio']:.3f} | "
              f"{r['ratio_min']:.3f} |" for r in pgd_rows]
    lines += ["", "PGD's loop adds to the bare loop only an in-place clamp per step (no allocation, no "
              "host synchronisation); outside the loop it checks its input once, draws the random start "
              "and projects the result.  On a machine shared with other jobs, differences of a few "
              "percent between the two columns are within run-to-run noise: compare the median with "
              "the best-run ratio."]
    s = spsa_row
    lines += ["", f"**SPSA's batching** ({s['batch']} images, {s['samples']} samples per iteration, "
              f"{s['iters']} iterations):", "",
              "| samples per forward pass | time (s) |", "|---|---|",
              f"| default (batched, up to {s['per_pass']} images per pass) | {s['batched_s']:.3f} |",
              f"| 1 (a loop over samples) | {s['loop_s']:.3f} |",
              "", f"The loop takes {s['speed_up']:.2f}x the batched time.", ""]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        write_section("Attacks", text)


if __name__ == "__main__":
    main()
