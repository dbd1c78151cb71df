"""What the benchmark scripts share: timing on any device, the machine's description, and
rewriting one section of ``RESULTS.md`` without touching the others.

Imported by the scripts beside it (``python benchmarks/bench_*.py`` puts this folder on the
path).  Speed is measured and reported here, never enforced by a test.
"""

from __future__ import annotations

import os
import platform
import re
import statistics
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).with_name("RESULTS.md")


def sync(dev: torch.device) -> None:
    """Wait for queued CUDA work, so a timer measures the work and not its launch."""
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def time_once(fn, dev: torch.device) -> float:
    """Seconds one call of ``fn`` takes on ``dev``."""
    sync(dev)
    start = time.perf_counter()
    fn()
    sync(dev)
    return time.perf_counter() - start


def median_time(fn, dev: torch.device, repeats: int) -> float:
    """Median seconds of ``repeats`` calls of ``fn`` after one warm-up call."""
    fn()
    return statistics.median(time_once(fn, dev) for _ in range(repeats))


def interleaved(first, second, dev: torch.device, repeats: int) -> tuple[list[float], list[float]]:
    """Times of ``first`` and ``second`` run alternately after one warm-up each, so that a
    slow spell of a shared machine hits both."""
    first(), second()
    times_first, times_second = [], []
    for _ in range(repeats):
        times_first.append(time_once(first, dev))
        times_second.append(time_once(second, dev))
    return times_first, times_second


def machine(dev: torch.device) -> str:
    """The device, the CPU's model name, cores, load, torch's version and thread count."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU ({cpu})"
    load = f", load average {os.getloadavg()[0]:.1f} when it finished" if hasattr(os, "getloadavg") else ""
    return (f"{where}; {os.cpu_count()} logical cores{load}; torch {torch.__version__} using "
            f"{torch.get_num_threads()} thread(s), Python {platform.python_version()}")


def write_section(title: str, text: str) -> None:
    """Replace (or append) the section ``## {title}`` of RESULTS.md, leaving the others alone."""
    old = RESULTS.read_text() if RESULTS.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    new = pattern.sub(lambda _: text, old) if pattern.search(old) else old.rstrip("\n") + "\n\n" + text
    RESULTS.write_text(new)
