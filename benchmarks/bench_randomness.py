"""Speed of the randomised defences of chapter 5 and of the attack that averages over them.

1. EOT-PGD, batched against a loop: PGD through :class:`coursepkg.adaptive.EOT` (the
   batch repeated ``samples`` times, one forward and one backward pass per step) against
   PGD through the same average computed by a Python loop over the samples (the way most
   libraries implement EOT), on SAP and on random resizing and padding.
2. The forward pass of SAP (both samplers) and of random resizing against the bare
   classifier's.

The architecture is the zoo's (``SmallCNN`` of width 16); timing does not depend on the
weights, so an untrained network is timed.  Run
``OMP_NUM_THREADS=1 python benchmarks/bench_randomness.py`` (``--quick`` for a smoke run);
it prints its tables and rewrites the section "Randomness" of ``benchmarks/RESULTS.md``
(``--no-write`` to leave it alone).  Never enforced by a test: speed depends on the machine.
"""

from __future__ import annotations

import argparse
import statistics

import torch
from torch import nn

from coursepkg.adaptive import EOT
from coursepkg.attacks import pgd
from coursepkg.config import device as default_device
from coursepkg.defences.randomness import RandomResizePad, StochasticActivationPruning
from coursepkg.models import SmallCNN

from _timing import interleaved, machine, write_section


class LoopedEOT(nn.Module):
    """The same average as ``EOT(model, samples)``, computed by a Python loop over the samples."""

    def __init__(self, model: nn.Module, samples: int):
        super().__init__()
        self.model, self.samples = model, samples

    def forward(self, x):
        return torch.stack([self.model(x) for _ in range(self.samples)]).mean(0)


def images(n: int, dev: torch.device) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(0)).to(dev)


def defences(dev):
    torch.manual_seed(0)
    net = SmallCNN("fashion-mnist", width=16).to(dev).eval()
    return net, {"SAP (multinomial)": StochasticActivationPruning(net, 1.0),
                 "SAP (bernoulli)": StochasticActivationPruning(net, 1.0, sampler="bernoulli"),
                 "random resize and pad": RandomResizePad(net)}


def bench_eot(dev, batch: int, samples: int, steps: int, repeats: int) -> list[dict]:
    _, models = defences(dev)
    x = images(batch, dev)
    y = torch.zeros(batch, dtype=torch.long, device=dev)
    rows = []
    for name in ("SAP (multinomial)", "random resize and pad"):
        model = models[name]
        batched, looped = interleaved(
            lambda m=model: pgd(EOT(m, samples), x, y, eps=0.1, steps=steps),
            lambda m=model: pgd(LoopedEOT(m, samples), x, y, eps=0.1, steps=steps),
            dev, repeats)
        b, lo = statistics.median(batched), statistics.median(looped)
        rows.append({"defence": name, "batch": batch, "samples": samples, "steps": steps,
                     "batched_s": b, "loop_s": lo, "speedup": lo / b})
    return rows


def bench_forward(dev, batch: int, repeats: int) -> list[dict]:
    net, models = defences(dev)
    x = images(batch, dev)
    rows = []
    with torch.no_grad():
        for name, model in models.items():
            bare, defended = interleaved(lambda: net(x), lambda m=model: m(x), dev, repeats)
            b, d = statistics.median(bare), statistics.median(defended)
            rows.append({"model": name, "batch": batch, "bare_ms": 1000 * b, "defended_ms": 1000 * d,
                         "ratio": d / b})
    return rows


def report(dev, eot_rows, forward_rows, quick: bool) -> str:
    lines = ["## Randomness", "",
             f"Machine: {machine(dev)}.{' Smoke run (--quick).' if quick else ''}", "",
             ("**EOT-PGD, batched (`adaptive.EOT`) against a Python loop over the samples** "
              "(median of interleaved runs, untrained SmallCNN of width 16):"), "",
             "| defence | batch | samples | PGD steps | batched (s) | loop (s) | speed-up |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['defence']} | {r['batch']} | {r['samples']} | {r['steps']} | {r['batched_s']:.3f} "
              f"| {r['loop_s']:.3f} | {r['speedup']:.2f}x |" for r in eot_rows]
    lines += ["", "**Forward pass of a randomised model against the bare classifier**:", "",
              "| model | batch | bare (ms) | defended (ms) | ratio |", "|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['batch']} | {r['bare_ms']:.1f} | {r['defended_ms']:.1f} | "
              f"{r['ratio']:.2f}x |" for r in forward_rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: small batches, few repeats")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: the course's device)")
    args = parser.parse_args()
    dev = torch.device(args.device) if args.device else default_device()
    batch, repeats, steps = (20, 2, 2) if args.quick else (32 if dev.type == "cpu" else 1000, 3, 5)
    eot_rows = bench_eot(dev, batch, 16, steps, repeats)
    forward_rows = bench_forward(dev, 500 if dev.type == "cpu" else 5000, 3 * repeats)
    text = report(dev, eot_rows, forward_rows, args.quick)
    print(text)
    if not args.no_write:
        write_section("Randomness" if dev.type == "cpu" else f"Randomness ({dev.type})", text)


if __name__ == "__main__":
    main()
