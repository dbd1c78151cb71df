"""Where the seconds of a build (or of nbval) go: the evaluations, per process and per attack set.

Run any command with ``COURSEPKG_TIMINGS=FILE`` set, e.g. the README's test command::

    COURSEPKG_TIMINGS=/tmp/timings.jsonl bash .ci/run
    python benchmarks/where_the_seconds_go.py /tmp/timings.jsonl

Every evaluation of the results store's three engines (``robust_accuracy`` -- which
``strongest``, ``sanity_checks`` and the course table call --, the randomised one and
``evasion``) appends one line.  Each chapter runs in its own kernel, so a process is a
chapter: the book build's eight kernels come first, in the order of ``_toc.yml``, then
pytest's own process (the unit tests), then nbval's kernels in the same order.  The script
labels them so when the count matches (``--labels`` overrides), and prints per process the
seconds computed and the seconds spent reading results back, then the costliest attack sets.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def chapters() -> list[str]:
    return sorted(p.stem for p in (ROOT / "book").glob("[0-9][0-9]_*.ipynb"))


def load(path: Path) -> list[dict]:
    lines = []
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if text.strip():
            try:
                lines.append(json.loads(text))
            except json.JSONDecodeError as err:
                raise SystemExit(f"error: {path}:{number} is not JSON ({err.msg}); "
                                 "was the file written by COURSEPKG_TIMINGS?") from None
    return lines


def by_process(lines: list[dict]) -> dict[int, list[dict]]:
    groups: dict[int, list[dict]] = {}
    for line in sorted(lines, key=lambda r: r["time"]):
        groups.setdefault(line["pid"], []).append(line)
    return groups


def default_labels(n_processes: int) -> list[str]:
    names = chapters()
    if n_processes == 2 * len(names) + 1:
        return [f"build {c}" for c in names] + ["pytest (unit tests)"] + [f"nbval {c}" for c in names]
    if n_processes == len(names):
        return list(names)
    return [f"process {i + 1}" for i in range(n_processes)]


def report(lines: list[dict], labels: list[str] | None = None, top: int = 12) -> str:
    groups = by_process(lines)
    labels = labels or default_labels(len(groups))
    if len(labels) != len(groups):
        raise SystemExit(f"error: {len(groups)} processes in the log but {len(labels)} labels; "
                         "give one label per process, in the order they started")
    out = ["| process | evaluations | read back | seconds computed | seconds reading |",
           "|---|---:|---:|---:|---:|"]
    costs: dict[tuple[str, str], float] = defaultdict(float)
    for label, rows in zip(labels, groups.values()):
        computed = sum(r["seconds"] for r in rows if not r["hit"])
        reading = sum(r["seconds"] for r in rows if r["hit"])
        out.append(f"| {label} | {len(rows)} | {sum(r['hit'] for r in rows)} | {computed:.1f} | "
                   f"{reading:.1f} |")
        for r in rows:
            if not r["hit"]:
                costs[(label, f"{r['kind']}: {', '.join(r['attacks'])} (n={r['n']})")] += r["seconds"]
    out += ["", f"The {top} costliest evaluations computed:", "",
            "| process | evaluation | seconds |", "|---|---|---:|"]
    for (label, what), seconds in sorted(costs.items(), key=lambda kv: -kv[1])[:top]:
        out.append(f"| {label} | {what[:110]} | {seconds:.1f} |")
    return "\n".join(out)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("log", type=Path, help="the file COURSEPKG_TIMINGS pointed at")
    parser.add_argument("--labels", nargs="*", help="one name per process, in start order")
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args(argv)
    if not args.log.exists():
        raise SystemExit(f"error: {args.log} does not exist; run the build with COURSEPKG_TIMINGS={args.log}")
    print(report(load(args.log), args.labels, args.top))


if __name__ == "__main__":
    main()
