"""`gradlab report`: run every bundled study, draw its figures, and write one report that reads
like the appendix of the study report it illustrates: each figure under the section it
illustrates, with its caption (studies.report.pipeline runs and draws the studies).
At the top, the findings table (also out/findings.csv): each study's published claim, the
criterion, what its runs measured and the verdict, from studies.analysis.findings.

    summary = build_report(scale="smoke", out="results/report")   # runs, draws, writes
    summary.markdown, summary.html                                # index.md, index.html

Study stores live in `results_root/<study>` (shared with `gradlab run`, so finished runs are
reused); figures go to `out/<study>/`. A study whose spec, runs or figures fail is listed with
its error; the others are reported as usual. index.html is self-contained: figures are embedded
as base64 data URIs, the style sheet is inline, nothing is fetched.
"""
import base64
import html
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from studies.report.findings_table import findings_html, findings_markdown, write_findings
from studies.report.kernel_checks import NAME as KERNEL_CHECKS, kernel_checks_part
from studies.report.pipeline import StudyReport, report_studies

# The sections of the report that studies illustrate, in the report's order, with the claim each
# makes (paraphrased) so a reader sees what the figures test.
SECTIONS = {
    "2": ("Structure of a Multi-Layer Perceptron",
          "Each layer computes z = W a_prev + b and a = sigma(z); the output is a^(L)."),
    "3": ("Loss functions",
          "MSE for regression; softmax cross-entropy for classification, from maximum "
          "likelihood."),
    "4": ("Backpropagation",
          "The chain rule gives delta^(l) = (W^(l+1))^T delta^(l+1) * sigma'(z^(l)) and "
          "dL/dW^(l) = delta^(l) a^(l-1)^T; the backward pass is linear in the parameters."),
    "5": ("Gradient descent",
          "theta <- theta - eta grad L, on the full dataset (batch), one sample (SGD) or a "
          "mini-batch."),
    "6": ("Adaptive optimization algorithms",
          "RMSProp divides the step by a running root mean square of the gradient; Adam adds "
          "momentum and bias correction."),
    "7": ("Activation functions",
          "Sigmoid is prone to vanishing gradients, tanh is zero-centred but saturates, ReLU is "
          "cheap but can leave dead units; Leaky ReLU, ELU and GELU mitigate this."),
    "8": ("Vanishing and exploding gradients",
          "Repeated multiplication of Jacobians during backpropagation makes gradients vanish "
          "(learning slows) or explode (training turns unstable)."),
    "9": ("Learning rate considerations",
          "Too small a learning rate converges slowly, too large diverges or oscillates; "
          "schedules and adaptive optimizers balance the two."),
}
SUBSECTIONS = {"3.1": "Mean squared error", "3.2": "Cross-entropy loss", "4.1": "Error signal",
               "4.2": "Gradients of parameters", "5.1": "Variants", "6.1": "RMSProp",
               "6.2": "Adam", "7.1": "Sigmoid", "7.2": "Tanh", "7.3": "ReLU", "7.4": "Variants",
               "8.1": "Mitigation strategies"}
SUBSECTION_CLAIMS = {"8.1": "Proper initialization (Xavier, He), non-saturating activations, "
                            "gradient clipping and batch normalization."}
OTHER = "other"
# Reading order of the bundled studies inside a section; others follow by name.
STUDY_ORDER = ("activations", "losses", "vanishing", "glorot2010", "he2015", "gd_variants",
               "critical_batch", "optimizers", "learning_rate", "lr_range", "edge_of_stability",
               "clipping", "batchnorm", "dead_relu", "mean_field", "trainability", "mnist1d")
@dataclass
class ReportSummary:
    scale: str
    out: str
    markdown: str
    html: str
    date: str
    commit: str
    wall_time: float
    studies: list
    machine: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    command: str = ""


# ---------------------------------------------------------------- running and drawing

def _section_key(section):
    """(top, sub): '8.1' -> ('8', '8.1'); '8' -> ('8', None); unknown -> ('other', None)."""
    section = str(section or "").strip()
    top = section.split(".")[0]
    if top not in SECTIONS:
        return OTHER, None
    return top, (section if section != top else None)


def _order(study):
    top, sub = _section_key(study.section)
    top_rank = list(SECTIONS).index(top) if top != OTHER else len(SECTIONS)
    sub_rank = tuple(int(p) for p in sub.split(".") if p.isdigit()) if sub else ()
    name_rank = STUDY_ORDER.index(study.name) if study.name in STUDY_ORDER else len(STUDY_ORDER)
    return top_rank, sub_rank, name_rank, study.name


def _git_commit():
    from studies.store import provenance
    info = provenance()
    commit = info.get("git_commit", "")
    try:
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5,
                               cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        dirty = ""
    return (commit + (" (with uncommitted changes)" if dirty and commit else "")) or "unknown", \
        info


def build_report(scale="quick", out="results/report", results_root="results", workers=None,
                 only=None, show_progress=True, spec_paths=None, kernel_checks=True):
    """Runs, draws and reports the bundled studies (or `only` those; `spec_paths`: {name: path})
    and the section 4 kernel checks (unless left out) to out/index.md, index.html."""
    from studies.spec import SCALES, bundled_specs
    if scale not in SCALES:
        raise ValueError(f"--scale: {scale!r} is not one of {list(SCALES)}")
    started = time.perf_counter()
    paths = dict(spec_paths if spec_paths is not None else bundled_specs())
    checks = kernel_checks and (not only or KERNEL_CHECKS in only)
    if only:
        only = [n for n in only if n != KERNEL_CHECKS]
        unknown = [n for n in only if n not in paths]
        if unknown:
            raise ValueError(f"--only: unknown study name(s) {unknown}; bundled: "
                             f"{', '.join(paths) or 'none'}")
        paths = {n: paths[n] for n in only}
    if not paths and not checks:
        raise ValueError("no study specs found")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    studies = report_studies(paths, scale, out, results_root, workers, show_progress)
    studies += [StudyReport(**kernel_checks_part(out))] if checks else []  # section 4
    studies.sort(key=_order)
    commit, info = _git_commit()
    summary = ReportSummary(scale=scale, out=str(out), markdown=str(out / "index.md"),
                            html=str(out / "index.html"),
                            date=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                            commit=commit, wall_time=time.perf_counter() - started,
                            studies=studies, machine=info.get("machine", {}),
                            versions=info.get("versions", {}),
                            command=f"gradlab report --scale {scale}"
                            + (f" --only {','.join(only)}" if only else ""))
    write_findings(summary.studies, out / "findings.csv")
    Path(summary.markdown).write_text(render_markdown(summary))
    Path(summary.html).write_text(render_html(summary))
    return summary


# ---------------------------------------------------------------- rendering


def _grouped(studies):
    """[(top, title, claim, [(sub, title, claim, [studies])])] in report order."""
    groups = {}
    for study in studies:
        top, sub = _section_key(study.section)
        groups.setdefault(top, {}).setdefault(sub, []).append(study)
    out = []
    for top in list(SECTIONS) + [OTHER]:
        if top not in groups:
            continue
        title, claim = SECTIONS.get(top, ("Other studies", "Studies without a report section, "
                                          "or whose spec could not be read."))
        subs = sorted(groups[top].items(), key=lambda kv: (kv[0] is not None, _num(kv[0])))
        out.append((top, title, claim,
                    [(sub, SUBSECTIONS.get(sub, ""), SUBSECTION_CLAIMS.get(sub, ""), items)
                     for sub, items in subs]))
    return out


def _num(section):
    return tuple(int(p) for p in (section or "").split(".") if p.isdigit())


def _heading(number, title):
    return f"{number} {title}" if number != OTHER else title


def _labels_text(labels):
    return ", ".join(f"{k} {v}" for k, v in labels.items()) or "-"


def _header_facts(summary):
    n_fig = sum(len(s.figures) for s in summary.studies)
    machine = summary.machine
    versions = ", ".join(f"{k} {summary.versions[k]}" for k in ("numpy", "numba")
                         if k in summary.versions)
    facts = [("Scale", summary.scale), ("Date", summary.date), ("Git commit", summary.commit),
            ("Total wall time", f"{summary.wall_time:.1f} s"),
            ("Studies", f"{len(summary.studies)} ({n_fig} figures)"),
            ("Machine", f"{machine.get('host', '?')}, {machine.get('cpus', '?')} CPUs, "
                        f"{machine.get('platform', '')}"),
            ("Versions", versions or "-")]
    if summary.command:
        facts.append(("Regenerate", summary.command))
    return facts


def _missing_sections(summary):
    covered = {_section_key(s.section)[0] for s in summary.studies}
    return [f"{k} {SECTIONS[k][0]}" for k in SECTIONS if k not in covered]


def _figure_numbers(summary):
    """{(study, stem): n}: figures numbered in reading order."""
    numbers, n = {}, 0
    for _, _, _, subs in _grouped(summary.studies):
        for _, _, _, studies in subs:
            for study in studies:
                for fig in study.figures:
                    n += 1
                    numbers[(study.name, fig["stem"])] = n
    return numbers


def render_markdown(summary):
    lines = ["# gradlab report", "",
             "Figures for *Backpropagation and Gradient-Based Optimization in Multi-Layer "
             "Perceptrons*, regenerated by `gradlab report`. Each figure sits under "
             "the report section it illustrates; its caption says what it shows and its key "
             "numbers.", ""]
    lines += ["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in _header_facts(summary)]
    lines += findings_markdown(summary.studies)
    lines += ["", "## Studies", "",
              "| study | section | runs | completed | diverged | failed | labels | wall time "
              "| status |", "|---|---|---|---|---|---|---|---|---|"]
    for s in summary.studies:
        status = "ok" if not s.errors else "error: " + "; ".join(
            f"{w}: {m}" for w, m in s.errors).replace("|", "\\|")
        lines.append(f"| [{s.name}](#{s.name}) | {s.section or '-'} | {s.runs} | "
                     f"{s.counts.get('completed', 0)} | {s.counts.get('diverged', 0)} | "
                     f"{s.counts.get('failed', 0)} | {_labels_text(s.labels)} | "
                     f"{s.wall_time:.1f} s | {status} |")
    missing = _missing_sections(summary)
    if missing:
        lines += ["", f"Report sections without a study here: {'; '.join(missing)}."]
    numbers = _figure_numbers(summary)
    for top, title, claim, subs in _grouped(summary.studies):
        lines += ["", f"## {_heading(top, title)}", "", f"*{claim}*"]
        for sub, sub_title, sub_claim, studies in subs:
            if sub:
                lines += ["", f"### {sub} {sub_title}".rstrip()]
                if sub_claim:
                    lines += ["", f"*{sub_claim}*"]
            for study in studies:
                lines += _markdown_study(study, numbers)
    return "\n".join(lines) + "\n"


def _markdown_study(study, numbers):
    lines = ["", f'<a id="{study.name}"></a>', "", f"#### Study `{study.name}`", ""]
    if study.description:
        lines += [study.description[0].upper() + study.description[1:] + ".", ""]
    facts = [f"spec `{Path(study.spec_path).name}`"]
    if study.grid:
        facts.append(f"grid: {study.grid}")
    facts.append(f"{study.runs_line()}, labels: {_labels_text(study.labels)}")
    facts.append(f"{study.new_runs} new and {study.reused_runs} reused runs, "
                 f"{study.wall_time:.1f} s")
    lines += [f"- {f}" for f in facts]
    for where, message in study.errors:
        lines.append(f"- **error** ({where}): {message}")
    for run_id, error in study.failed_runs[:5]:
        lines.append(f"- failed run `{run_id}`: {error}")
    if len(study.failed_runs) > 5:
        lines.append(f"- ... and {len(study.failed_runs) - 5} more failed runs")
    for fig in study.figures:
        n = numbers[(study.name, fig["stem"])]
        lines += ["", f"![Figure {n}: {fig['stem']}]({fig['png']})", "",
                  f"**Figure {n}** ({fig['stem']}, [PDF]({fig['pdf']})). {fig['caption']}"]
    return lines


CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222;
       max-width: 62rem; margin: 2rem auto; padding: 0 1.2rem; line-height: 1.5; }
h1 { font-size: 1.7rem; margin-bottom: .2rem; }
h2 { font-size: 1.35rem; border-bottom: 1px solid #ccc; padding-bottom: .2rem;
     margin-top: 2.6rem; }
h3 { font-size: 1.15rem; margin-top: 1.8rem; }
h4 { font-size: 1rem; margin: 1.6rem 0 .4rem; }
p.claim { color: #555; font-style: italic; margin-top: .3rem; }
table { border-collapse: collapse; font-size: .85rem; margin: .8rem 0; }
th, td { border: 1px solid #ddd; padding: .25rem .55rem; text-align: left;
         vertical-align: top; }
th { background: #f4f4f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.facts th { width: 9rem; }
ul.facts { font-size: .88rem; color: #444; padding-left: 1.2rem; }
figure { margin: 1.2rem 0 2rem; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: .88rem; color: #333; margin-top: .4rem; }
.error { color: #a00; }
.ok { color: #070; }
code { background: #f4f4f4; padding: 0 .2rem; border-radius: 3px; }
nav ol { font-size: .9rem; }
"""


def _e(text):
    return html.escape(str(text))


def _data_uri(path):
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f"data:image/png;base64,{data}"


def render_html(summary):
    out = Path(summary.out)
    numbers = _figure_numbers(summary)
    grouped = _grouped(summary.studies)
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>gradlab report ({_e(summary.scale)})</title>",
             f"<style>{CSS}</style></head><body>", "<h1>gradlab report</h1>",
             "<p>Figures for <em>Backpropagation and Gradient-Based Optimization in "
             "Multi-Layer Perceptrons</em>, regenerated by <code>gradlab report"
             "</code>. Each figure sits under the report section it illustrates; its caption "
             "says what it shows and its key numbers.</p>", '<table class="facts">']
    parts += [f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in _header_facts(summary)]
    parts += ["</table>"] + findings_html(summary.studies) + ["<h2>Studies</h2>", "<table><tr><th>study</th><th>section</th>"
              "<th>runs</th><th>completed</th><th>diverged</th><th>failed</th><th>labels</th>"
              "<th>wall time</th><th>status</th></tr>"]
    for s in summary.studies:
        status = '<span class="ok">ok</span>' if not s.errors else \
            '<span class="error">' + "<br>".join(f"{_e(w)}: {_e(m)}" for w, m in s.errors) + \
            "</span>"
        cells = [f'<a href="#{_e(s.name)}">{_e(s.name)}</a>', _e(s.section or "-")]
        parts.append("<tr><td>" + "</td><td>".join(cells) + "</td>" + "".join(
            f'<td class="num">{v}</td>' for v in (s.runs, s.counts.get("completed", 0),
                                                  s.counts.get("diverged", 0),
                                                  s.counts.get("failed", 0)))
            + f"<td>{_e(_labels_text(s.labels))}</td>"
            + f'<td class="num">{s.wall_time:.1f} s</td><td>{status}</td></tr>')
    parts.append("</table>")
    missing = _missing_sections(summary)
    if missing:
        parts.append(f"<p>Report sections without a study here: {_e('; '.join(missing))}.</p>")
    parts.append("<nav><h2>Contents</h2><ol>")
    for top, title, _, subs in grouped:
        inner = "".join(f'<li><a href="#s{_e(sub)}">{_e(sub)} {_e(sub_title)}</a></li>'
                        for sub, sub_title, _, _ in subs if sub)
        parts.append(f'<li><a href="#s{_e(top)}">{_e(_heading(top, title))}</a>'
                     + (f"<ol>{inner}</ol>" if inner else "") + "</li>")
    parts.append("</ol></nav>")
    for top, title, claim, subs in grouped:
        parts += [f'<h2 id="s{_e(top)}">{_e(_heading(top, title))}</h2>',
                  f'<p class="claim">{_e(claim)}</p>']
        for sub, sub_title, sub_claim, studies in subs:
            if sub:
                parts.append(f'<h3 id="s{_e(sub)}">{_e(sub)} {_e(sub_title)}</h3>')
                if sub_claim:
                    parts.append(f'<p class="claim">{_e(sub_claim)}</p>')
            for study in studies:
                parts += _html_study(study, numbers, out)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _html_study(study, numbers, out):
    parts = [f'<h4 id="{_e(study.name)}">Study <code>{_e(study.name)}</code></h4>']
    if study.description:
        parts.append(f"<p>{_e(study.description[0].upper() + study.description[1:])}.</p>")
    facts = [f"spec <code>{_e(Path(study.spec_path).name)}</code>"]
    if study.grid:
        facts.append(f"grid: {_e(study.grid)}")
    facts.append(f"{_e(study.runs_line())}; labels: {_e(_labels_text(study.labels))}")
    facts.append(f"{study.new_runs} new and {study.reused_runs} reused runs, "
                 f"{study.wall_time:.1f} s")
    facts += [f'<span class="error">error ({_e(w)}): {_e(m)}</span>' for w, m in study.errors]
    facts += [f'<span class="error">failed run <code>{_e(r)}</code>: {_e(m)}</span>'
              for r, m in study.failed_runs[:5]]
    if len(study.failed_runs) > 5:
        facts.append(f"... and {len(study.failed_runs) - 5} more failed runs")
    parts.append('<ul class="facts">' + "".join(f"<li>{f}</li>" for f in facts) + "</ul>")
    for fig in study.figures:
        n = numbers[(study.name, fig["stem"])]
        parts.append(f'<figure id="fig-{n}"><img src="{_data_uri(out / fig["png"])}" '
                     f'alt="Figure {n}: {_e(fig["stem"])}"><figcaption><b>Figure {n}</b> '
                     f'(<code>{_e(fig["stem"])}</code>, <a href="{_e(fig["pdf"])}">PDF</a>). '
                     f'{_e(fig["caption"])}</figcaption></figure>')
    return parts
