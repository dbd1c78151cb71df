"""Record how long each chapter notebook takes to execute: ``benchmarks/chapter_times.json``.

The book never types a running time by hand.  Each chapter's "Before you start" box writes
``{{ runtime_NN_name }}``, and the book's extension ``book/_ext/chapter_facts.py`` fills it
from the file this script writes.  The file keeps one record per *setting* (a profile on a
kind of machine)::

    {"quick-cpu": {"machine": "2-core CPU", "profile": "quick", "cache": "cold",
                   "date": "2026-11-29", "source": "...",
                   "seconds": {"01_threat_models": 83.0, ...}},
     "full-gpu": {...}}

and a new measurement of one setting replaces only that setting.

Two ways to measure::

    # after a finished book build (myst-nb keeps each notebook's execution time in the
    # Sphinx environment, DIR/.doctrees/environment.pickle):
    python benchmarks/chapter_times.py --from-build _build --setting quick-cpu \\
        --machine "2-core CPU" --cache cold

    # the per-chapter times of the last fresh-clone CI run, recorded in RESULTS.md
    # ("of which executing `NN_name` ... | 83 s |" rows):
    python benchmarks/chapter_times.py --from-results benchmarks/RESULTS.md

``--cache cold`` means the build started from an empty model cache (every zoo model the
chapter uses was trained during its run); ``warm`` means every model was already cached.
Run the ``--from-build`` form on the build that CI makes (``.ci/run`` starts from an empty
cache) or, for ``full-gpu``, on a GPU machine with ``COURSEPKG_PROFILE=full``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import pickle
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TIMES_FILE = HERE / "chapter_times.json"
#: The settings the book names; others may be recorded too.
DEFAULT_MACHINES = {"quick-cpu": "2-core CPU", "full-gpu": "GPU"}
CACHE_STATES = ("cold", "warm")
_RESULTS_ROW = re.compile(r"executing `(\d\d_\w+)`[^|]*\|.*")
_RESULTS_CELL = re.compile(r"\|\s*(\d+(?:\.\d+)?)\s*s\b")  # "| 83 s |", "| 83 s (why) |"
_RESULTS_DATE = re.compile(r"[Mm]easured on (\d{4}-\d{2}-\d{2})")
_RESULTS_SECTION = "## The book and the test suite (CI)"


def load(path: Path = TIMES_FILE) -> dict:
    """The recorded settings (``{}`` when the file does not exist yet)."""
    path = Path(path)
    if not path.exists():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object of settings; delete it and re-measure")
    return data


def record(setting: str, seconds: dict[str, float], *, machine: str, profile: str, cache: str,
           date: str, source: str, path: Path = TIMES_FILE) -> dict:
    """Replace the record of ``setting`` in ``path`` (other settings are kept); return all."""
    if cache not in CACHE_STATES:
        raise ValueError(f"cache must be one of {CACHE_STATES}, not {cache!r}")
    if not seconds:
        raise ValueError(f"no chapter time found for {setting!r}: nothing recorded")
    data = load(path)
    data[setting] = {
        "machine": machine,
        "profile": profile,
        "cache": cache,
        "date": date,
        "source": source,
        "seconds": {stem: round(float(s), 1) for stem, s in sorted(seconds.items())},
    }
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return data


def times_from_build(build_dir: Path) -> dict[str, float]:
    """``{notebook stem: seconds}`` from a finished ``jupyter-book build`` in ``build_dir``.

    myst-nb stores each executed document's ``exec_data`` (``runtime`` in seconds,
    ``succeeded``) in the Sphinx environment (``env.nb_metadata[docname]``), pickled by
    Sphinx in ``.doctrees/environment.pickle``.  Only chapter notebooks (``NN_name``) that
    executed successfully are returned.
    """
    build_dir = Path(build_dir)
    candidates = [build_dir / ".doctrees" / "environment.pickle",
                  build_dir / "doctrees" / "environment.pickle"]
    pickled = next((p for p in candidates if p.exists()), None)
    if pickled is None:
        raise FileNotFoundError(f"no environment.pickle under {build_dir}/.doctrees: "
                                "pass the directory that `jupyter-book build` wrote (_build)")
    with pickled.open("rb") as f:
        env = pickle.load(f)
    metadata = getattr(env, "nb_metadata", {}) or {}
    seconds = {}
    for docname, data in metadata.items():
        stem = docname.rsplit("/", 1)[-1]
        exec_data = (data or {}).get("exec_data") or {}
        if re.fullmatch(r"\d\d_\w+", stem) and exec_data.get("succeeded") \
                and exec_data.get("runtime") is not None:
            seconds[stem] = float(exec_data["runtime"])
    return seconds


def times_from_results(results: Path) -> tuple[dict[str, float], str | None]:
    """The per-chapter times of RESULTS.md's CI section (its newest, rightmost column), and the
    date that column was measured on (the last "measured on" of the section)."""
    text = Path(results).read_text(encoding="utf-8")
    start = text.find(_RESULTS_SECTION)
    if start < 0:
        raise ValueError(f"{results}: no section {_RESULTS_SECTION!r}")
    end = text.find("\n## ", start + len(_RESULTS_SECTION))
    section = text[start:] if end < 0 else text[start:end]
    seconds = {}  # the newest (rightmost) column of each chapter's row
    for row in _RESULTS_ROW.finditer(section):
        cells = _RESULTS_CELL.findall(row.group(0))
        if cells:
            seconds[row.group(1)] = float(cells[-1])
    dates = _RESULTS_DATE.findall(section)  # the newest measurement is named last
    return seconds, (dates[-1] if dates else None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--from-build", type=Path, metavar="DIR",
                        help="a finished `jupyter-book build` output directory (e.g. _build)")
    source.add_argument("--from-results", type=Path, metavar="RESULTS_MD",
                        help="benchmarks/RESULTS.md: the CI section's per-chapter cold times")
    parser.add_argument("--setting", default="quick-cpu",
                        help="the record to replace: quick-cpu (default) or full-gpu")
    parser.add_argument("--machine", help="e.g. '2-core CPU' (default from the setting)")
    parser.add_argument("--profile", help="quick or full (default: the setting's first word)")
    parser.add_argument("--cache", choices=CACHE_STATES, default="cold",
                        help="cold: from an empty model cache (default); warm: models cached")
    parser.add_argument("--date", help="YYYY-MM-DD (default: today, or RESULTS.md's date)")
    parser.add_argument("--output", type=Path, default=TIMES_FILE)
    args = parser.parse_args(argv)

    machine = args.machine or DEFAULT_MACHINES.get(args.setting)
    if not machine:
        parser.error(f"--machine is needed for the setting {args.setting!r}")
    profile = args.profile or args.setting.split("-")[0]
    if args.from_build is not None:
        seconds, date = times_from_build(args.from_build), None
        source_text = "myst-nb execution times of a jupyter-book build"
    else:
        seconds, date = times_from_results(args.from_results)
        source_text = "benchmarks/RESULTS.md, the CI run on a fresh clone"
    date = args.date or date or datetime.date.today().isoformat()
    data = record(args.setting, seconds, machine=machine, profile=profile, cache=args.cache,
                  date=date, source=source_text, path=args.output)
    for stem, s in data[args.setting]["seconds"].items():
        print(f"{args.setting}  {stem:32s} {s:8.1f} s")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
