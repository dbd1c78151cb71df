"""``python -m coursepkg.report MODEL (--dataset NAME | --data FILE.pt) [--eps EPS] ...``

Writes ``report.html`` (self-contained), ``report.md`` and ``report.json`` into ``--out``.
Bad input prints one line ``error: ...`` saying what to do, and exits with status 2.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

DATASETS = ("fashion-mnist", "mnist", "cifar10")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m coursepkg.report",
        description="Evaluate your own model with the course's strongest evaluation, its "
                    "gradient-masking checklist and a paired comparison with the undefended baseline; "
                    "write report.html, report.md and report.json.")
    parser.add_argument("model", metavar="MODEL",
                        help="a TorchScript file (torch.jit.save) or an entry point package.module:factory "
                             "returning an nn.Module from images in [0, 1] to logits")
    parser.add_argument("--dataset", choices=DATASETS,
                        help="evaluate on the course's evaluation images of this dataset (with --data: the "
                             "dataset the images come from, for the shape check and the baseline)")
    parser.add_argument("--data", type=Path, metavar="FILE.pt",
                        help="your images: a .pt file with a dict {'x': N x C x H x W in [0, 1], 'y': labels} "
                             "or a tuple (x, y)")
    parser.add_argument("--eps", type=float, help="the budget (default: the dataset's standard eps)")
    parser.add_argument("--norm", choices=("linf", "l2"), default="linf")
    parser.add_argument("--n", type=int, help="evaluate the first N images (default: the profile's eval_subset "
                                              "for --dataset, every image for --data)")
    parser.add_argument("--random", action="store_true",
                        help="the model is random at test time: judge over k draws, attack through EOT")
    parser.add_argument("--profile", help="the budget profile: quick or full (default: the course's default)")
    parser.add_argument("--out", type=Path, default=Path("report"), help="output folder (default: ./report)")
    parser.add_argument("--name", help="the model's name in the report (default: MODEL)")
    parser.add_argument("--train-baseline", action="store_true",
                        help="train the course's undefended baseline if it is not cached (minutes on a CPU)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the comparison with the baseline")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def run(args: argparse.Namespace, argv: list[str]) -> tuple[dict, object]:
    """Evaluate and write the report; returns ``({file name: path}, the report)``."""
    from ..config import device, profile
    from ..data import dataset_info
    from . import core, loading, render

    if args.dataset is None and args.data is None:
        raise ValueError("give the images: --dataset fashion-mnist|mnist|cifar10 or --data FILE.pt")
    p = profile(args.profile)
    if args.n is not None and args.n < 1:
        raise ValueError(f"--n must be a positive number of images, got {args.n}")
    eps = args.eps
    if eps is None:
        if args.dataset is None:
            raise ValueError("give the budget with --eps (e.g. --eps 0.1): your data name no dataset "
                             "whose standard eps could be used")
        eps = dataset_info(args.dataset).eps
    core.check_eps(eps, args.norm)  # before loading anything
    dev = device()
    model = loading.load_model(args.model, device=dev)
    if args.data is not None:
        x, y = loading.load_data(args.data)
        if args.n is not None:
            x, y = x[:args.n], y[:args.n]
    else:
        x, y = loading.course_images(args.dataset, args.n or p.eval_subset, profile=p)
    baseline = False if args.no_baseline else (True if args.train_baseline else None)
    start = time.perf_counter()
    report = core.evaluate_model(model, x, y, eps=eps, norm=args.norm, random=args.random, profile=p,
                                 progress=not args.no_progress, dataset=args.dataset, baseline=baseline,
                                 name=args.name or args.model)
    if args.data is None:
        report.budgets["eval_subset"] = p.eval_subset  # the course's evaluation images came from it
    report.versions["seconds"] = round(time.perf_counter() - start, 1)
    report.versions["command"] = "python -m coursepkg.report " + shlex.join(argv)
    return render.write_report(report, args.out), report


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, write the report, print where; on bad input print ``error: ...`` and return 2."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    try:
        written, report = run(args, argv)
    except (ValueError, TypeError, FileNotFoundError, PermissionError) as err:
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2
    print(report.verdict)
    for path in written.values():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
