"""Speed of the purifiers of chapter 3.

1. Total-variation minimisation, batched against image by image: the same
   :func:`coursepkg.defences.purification.tv_minimise` (same masks, same iterations) on a
   whole batch at once and in a Python loop over its images.
2. PixelDefend's purification time per image at several batch sizes: 784 sequential
   PixelCNN evaluations per batch, each on the pixel's receptive cone.  The architecture is
   the zoo's ``pixelcnn`` recipe (the time does not depend on the weights, so an untrained
   network is timed and no training is needed).
3. JPEG through PIL, per image, for scale.

Run ``OMP_NUM_THREADS=1 python benchmarks/bench_purification.py`` (``--quick`` for a smoke
run); it prints a table and rewrites the section "Purification" of ``benchmarks/RESULTS.md``.
Never enforced by a test: speed depends on the machine.
"""

from __future__ import annotations

import argparse

import torch

from coursepkg.config import device as default_device
from coursepkg.defences.pixelcnn import PixelCNN, pixeldefend
from coursepkg.defences.purification import JPEG, tv_minimise
from coursepkg.zoo import recipe

from _timing import machine, median_time, write_section

def images(n: int, dev: torch.device) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(0)).to(dev)


def bench_tv(dev, batch: int, iterations: int, repeats: int) -> dict:
    x = images(batch, dev)
    mask = torch.bernoulli(torch.full_like(x, 0.5))
    batched = median_time(lambda: tv_minimise(x, mask, 0.05, iterations), dev, repeats)
    looped = median_time(lambda: [tv_minimise(x[k:k + 1], mask[k:k + 1], 0.05, iterations)
                                   for k in range(batch)], dev, repeats)
    return {"batch": batch, "iterations": iterations, "batched_s": batched, "loop_s": looped,
            "speedup": looped / batched}


def bench_pixeldefend(dev, batches: list[int], repeats: int) -> list[dict]:
    defaults = recipe("pixelcnn").defaults
    torch.manual_seed(0)
    model = PixelCNN("fashion-mnist", channels=defaults["channels"], layers=defaults["layers"],
                     first_kernel=defaults["first_kernel"]).to(dev).eval()
    rows = []
    for batch in batches:
        x = images(batch, dev)
        seconds = median_time(lambda: pixeldefend(model, x, 0.1), dev, repeats)
        rows.append({"batch": batch, "seconds": seconds, "ms_per_image": 1000 * seconds / batch})
    return rows


def bench_jpeg(dev, batch: int, repeats: int) -> dict:
    x = images(batch, dev)
    seconds = median_time(lambda: JPEG(75)(x), dev, repeats)
    return {"batch": batch, "ms_per_image": 1000 * seconds / batch}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: small batches, few repeats")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args()
    dev = default_device()
    repeats = 1 if args.quick else 3
    tv_rows = [bench_tv(dev, batch, 60, repeats) for batch in ([50] if args.quick else [100, 500])]
    pd_rows = bench_pixeldefend(dev, [1, 10] if args.quick else [1, 40, 200], repeats)
    jpeg = bench_jpeg(dev, 100 if args.quick else 1000, repeats)
    lines = ["## Purification", "",
             f"Machine: {machine(dev)}.  Command: `OMP_NUM_THREADS=1 python benchmarks/bench_purification.py`"
             f"{' --quick' if args.quick else ''}; medians of {repeats} runs after a warm-up.", "",
             "**Total-variation minimisation, batched against image by image** (`tv_minimise`, "
             "Chambolle-Pock, the same masks and iterations; 28 x 28 grey images):", "",
             "| images | iterations | batched (s) | image by image (s) | speed-up |", "|---|---|---|---|---|"]
    lines += [f"| {r['batch']} | {r['iterations']} | {r['batched_s']:.3f} | {r['loop_s']:.3f} | "
              f"{r['speedup']:.1f}x |" for r in tv_rows]
    lines += ["", "**PixelDefend's purification time** (the zoo's PixelCNN architecture, eps_defend = 0.1, "
              "784 sequential steps per batch):", "",
              "| batch | time (s) | per image (ms) |", "|---|---|---|"]
    lines += [f"| {r['batch']} | {r['seconds']:.2f} | {r['ms_per_image']:.1f} |" for r in pd_rows]
    lines += ["", f"**JPEG through PIL** (quality 75, {jpeg['batch']} images): "
              f"{jpeg['ms_per_image']:.3f} ms per image.", ""]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section("Purification", text)


if __name__ == "__main__":
    main()
