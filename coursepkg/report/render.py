"""A :class:`~coursepkg.report.ModelReport` as HTML, Markdown and JSON.

* :func:`~coursepkg.report.to_html` -- one self-contained page: inline CSS, the plot of accuracy against ε as
  a base64 PNG (``data:`` URL), no script and no request to any other file or host, so it
  opens the same offline, in a mail attachment or on a course's submission server;
* :func:`~coursepkg.report.to_markdown` -- the same content as Markdown (the plot left out: its numbers are a table);
* :func:`~coursepkg.report.to_json` -- ``ModelReport.as_dict()`` as JSON;
* :func:`~coursepkg.report.write_report` -- all three into a folder: ``report.html``, ``report.md``, ``report.json``.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

from ..evaluate import Interval

FILES = ("report.html", "report.md", "report.json")

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 60rem;
       margin: 2rem auto; padding: 0 1rem; color: #1d1d1f; line-height: 1.45; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5rem 0; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
.verdict { background: #fff8e6; border-left: 6px solid #e0a100; padding: 0.8rem 1rem; }
.pass { color: #17702f; font-weight: bold; } .fail { color: #b00020; font-weight: bold; }
.note { color: #555; font-size: 0.9rem; }
code { background: #f3f3f3; padding: 0 0.2rem; }
"""


def _fmt(value) -> str:
    if isinstance(value, Interval):
        return format(value)
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _ball(report) -> str:
    return f"{'L∞' if report.norm == 'linf' else 'L2'} ε = {report.eps:g}"


def _sections(report) -> list[tuple[str, list[tuple[str, list]], list[str]]]:
    """The report's content as ``(heading, [(table caption, rows)], [paragraphs])`` sections."""
    rule = f", worst of {report.randomised['k']} draws" if report.randomised else ""
    summary = [("", [["measure", "value [95% interval]"],
                     [f"clean accuracy{rule}", _fmt(report.clean)],
                     [f"accuracy under every attack run at {_ball(report)}{rule}", _fmt(report.worst_case)],
                     ["images", str(report.n)]])]
    if report.randomised:
        r = report.randomised
        summary.append(("Judged over k draws", [
            ["rule", "clean", "under the attacks run"],
            [f"worst of {r['k']}", _fmt(r["clean_worst"]), _fmt(r["attacked_worst"])],
            ["majority vote", _fmt(r["clean_majority"]), _fmt(r["attacked_majority"])]]))
    fooled = [["attack (in the order run)", "images it broke first"]] + [
        [a, str(report.fooled_by.get(a, 0))] for a in report.attacks]
    flags = [["flag", "value"]] + [[k, _fmt(v)] for k, v in report.flags.items()]
    checks = [["check", "result", "numbers", "what a failure means"]] + [
        [c["name"], "pass" if c["passed"] else "FAIL", c["detail"], c["meaning"]] for c in report.checks]
    curve = [["ε", "accuracy"]] + [[f"{e:.4g}", f"{a:.3f}"] for e, a in
                                   zip(report.curve["eps"], report.curve["accuracy"])]
    sections = [
        ("Summary", summary, []),
        ("The strongest evaluation", [("", fooled)],
         ["Each attack runs on the images every earlier attack left correct, so an image counts "
          "for the first attack that broke it; the accuracy under every attack is the per-image "
          "worst case (Carlini et al. 2019)."]),
        ("Accuracy against ε", [("", curve)], [f"Attack: {report.curve['attack']}. A larger budget can never "
                                               "help the model, so the curve must not rise."
                                               + (" The masking flags fired, so a gradient attack's curve "
                                                  "says little here: the worst case above includes the "
                                                  "attacks that need no gradient of this model."
                                                  if report.masked else "")]),
        ("Gradient-masking flags", [("", flags)],
         ["Two backward passes at the clean images (Athalye et al. 2018): zero, non-finite or "
          "disagreeing gradients leave gradient attacks blind. "
          + ("The flags fired." if report.masked else "No flag fired.")]),
    ]
    if report.checks:
        sections.append(("The checklist", [("", checks)],
                         [f"Run on the first {report.checklist_n} images (Athalye et al. 2018, section 3.1; "
                          "Carlini et al. 2019, section 5). Passing every check removes the common ways an "
                          "evaluation fools itself; it proves nothing more."]))
    if report.baseline is not None:
        b = report.baseline
        sections.append(("Against the undefended baseline", [("", [
            ["", "value"],
            ["baseline clean accuracy", _fmt(b["clean"])],
            ["baseline under the strongest evaluation", _fmt(b["worst_case"])],
            ["kept by the model only", str(b["model_only"])],
            ["kept by the baseline only", str(b["baseline_only"])],
            ["kept by both", str(b["both"])], ["kept by neither", str(b["neither"])],
            ["sign test p, one-sided (model keeps more)", f"{b['p_greater']:.3g}"],
            ["sign test p, two-sided", f"{b['p_two_sided']:.3g}"]])],
            ["The course's undefended model (zoo recipe standard) under the course's strongest "
             "evaluation on the same images. Only the images where the two disagree carry "
             "information; the exact binomial test asks whether they split unevenly."]))
    budgets = [["budget (Profile field)", "value"]] + [[k, str(v)] for k, v in report.budgets.items()]
    versions = [["", "version"]] + [[k, str(v)] for k, v in report.versions.items()]
    sections.append(("How to reproduce it", [("Budgets", budgets), ("Software", versions)],
                     ["The course's evaluations draw their randomness from seed 0, so a rerun with the "
                      "same budgets, model and images gives the same per-image answers."]))
    return sections


def to_markdown(report) -> str:
    """The report as Markdown."""
    lines = [f"# Evaluation report: {report.name}", "",
             f"{report.n} images" + (f" of {report.dataset}" if report.dataset else "")
             + f", {_ball(report)}.", "", "## Verdict", "", f"**{report.verdict}**", ""]
    lines += [f"- {f}" for f in report.findings] + [""]
    lines += [f"> {note}" for note in report.notes] + ([""] if report.notes else [])
    for heading, tables, paragraphs in _sections(report):
        lines += [f"## {heading}", ""]
        for caption, rows in tables:
            if caption:
                lines += [f"**{caption}**", ""]
            lines.append("| " + " | ".join(rows[0]) + " |")
            lines.append("|" + "---|" * len(rows[0]))
            lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows[1:]]
            lines.append("")
        lines += [p + "\n" for p in paragraphs]
    return "\n".join(lines).rstrip() + "\n"


def _curve_png(report) -> str:
    """The accuracy-against-ε plot as a base64 PNG (matplotlib's Agg canvas: no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(report.curve["eps"], report.curve["accuracy"], marker="o", label=report.curve["attack"])
    w = report.worst_case
    ax.errorbar([report.eps], [w.value], yerr=[[w.value - w.lo], [w.hi - w.value]], fmt="s", color="crimson",
                capsize=3, label="every attack run (95% interval)")
    ax.set_xlabel("ε")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _html_table(rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = []
    for row in rows[1:]:
        cells = []
        for c in row:
            cls = ' class="pass"' if c == "pass" else ' class="fail"' if c == "FAIL" else ""
            cells.append(f"<td{cls}>{html.escape(c)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def to_html(report) -> str:
    """The report as one self-contained HTML page (inline CSS, the plot as a ``data:`` PNG)."""
    e = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>Evaluation report: {e(report.name)}</title><style>{_CSS}</style></head><body>",
             f"<h1>Evaluation report: <code>{e(report.name)}</code></h1>",
             f"<p>{report.n} images" + (f" of {e(report.dataset)}" if report.dataset else "")
             + f", {e(_ball(report))}.</p>",
             '<section id="verdict" class="verdict"><h2>Verdict</h2>',
             f'<p id="verdict-text"><strong>{e(report.verdict)}</strong></p><ul>',
             *[f"<li>{e(f)}</li>" for f in report.findings], "</ul>",
             *[f'<p class="note">{e(n)}</p>' for n in report.notes], "</section>"]
    for heading, tables, paragraphs in _sections(report):
        parts.append(f"<section><h2>{e(heading)}</h2>")
        if heading == "Accuracy against ε":
            parts.append(f'<img alt="accuracy against eps" src="data:image/png;base64,{_curve_png(report)}">')
        for caption, rows in tables:
            if caption:
                parts.append(f"<h3>{e(caption)}</h3>")
            parts.append(_html_table(rows))
        parts += [f"<p>{e(p)}</p>" for p in paragraphs]
        parts.append("</section>")
    parts += ['<p class="note">Written by <code>python -m coursepkg.report</code>.</p>', "</body></html>"]
    return "\n".join(parts) + "\n"


def to_json(report) -> str:
    """The report as JSON (``ModelReport.as_dict()``)."""
    return json.dumps(report.as_dict(), indent=2, ensure_ascii=False) + "\n"


def write_report(report, out: str | Path) -> dict[str, Path]:
    """Write ``report.html``, ``report.md`` and ``report.json`` into the folder ``out`` (created)."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"cannot create the output folder {out} ({err.strerror}); choose another with --out") \
            from None
    written = {}
    for name, text in zip(FILES, (to_html(report), to_markdown(report), to_json(report))):
        path = out / name
        path.write_text(text, encoding="utf-8")
        written[name] = path
    return written
