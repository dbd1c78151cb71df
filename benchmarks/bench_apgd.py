"""APGD's cost per iteration against PGD's (Croce and Hein 2020 vs Madry et al. 2018).

Both take one forward and one backward pass per iteration; APGD adds its momentum, the
per-example step sizes and the bookkeeping of its best point.  The two run interleaved on
the same model and batch, one run each, the same number of iterations (goal: APGD within
1.2x of PGD per iteration).

Run ``OMP_NUM_THREADS=1 python benchmarks/bench_apgd.py`` (``--quick`` for a smoke run); it
prints a table and rewrites the section "APGD against PGD" of ``benchmarks/RESULTS.md``.
Never enforced by a test: speed depends on the machine.
"""

from __future__ import annotations

import argparse
import statistics

import torch

from coursepkg.attacks import apgd, pgd
from coursepkg.config import device as default_device
from coursepkg.models import SmallCNN

from _timing import interleaved, machine, write_section


def bench(dev, batch: int, steps: int, repeats: int) -> dict:
    torch.manual_seed(0)
    model = SmallCNN("fashion-mnist", width=16).to(dev).eval()  # the zoo's architecture
    x = torch.rand(batch, 1, 28, 28, device=dev)
    y = torch.randint(0, 10, (batch,), device=dev)
    run = dict(eps=0.1, steps=steps)
    t_pgd, t_apgd = interleaved(lambda: pgd(model, x, y, restarts=1, **run),
                                lambda: apgd(model, x, y, restarts=1, **run), dev, repeats)
    p, a = statistics.median(t_pgd), statistics.median(t_apgd)
    return {"batch": batch, "steps": steps, "pgd_s": p, "apgd_s": a, "ratio": a / p,
            "ratio_min": min(t_apgd) / min(t_pgd)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: small batch, few repeats")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args()
    dev = default_device()
    repeats = 2 if args.quick else 5
    rows = [bench(dev, b, s, repeats) for b, s in ([(64, 10)] if args.quick else [(128, 50), (500, 50)])]
    lines = ["## APGD against PGD", "",
             f"Machine: {machine(dev)}.  Command: `OMP_NUM_THREADS=1 python benchmarks/bench_apgd.py`"
             f"{' --quick' if args.quick else ''}; medians of {repeats} interleaved runs, one run "
             "(no restart) each, the same iterations.", "",
             "| batch | iterations | PGD (s) | APGD (s) | ratio (median) | ratio (best runs) |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['batch']} | {r['steps']} | {r['pgd_s']:.3f} | {r['apgd_s']:.3f} | {r['ratio']:.3f} | "
              f"{r['ratio_min']:.3f} |" for r in rows]
    lines += ["", "APGD's extra work per iteration is elementwise (momentum, projection, per-example "
              "bookkeeping); at its checkpoints it may evaluate one more forward and backward pass "
              "for the examples it sends back to their best point.", ""]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        write_section("APGD against PGD", text)


if __name__ == "__main__":
    main()
