"""`gradlab report`: sections in the report's order, captions and embedded figures, a header with
provenance and a table of studies, errors listed without stopping the report, and the smoke
end to end run of the vanishing study."""
import re
import shutil

import pytest

from _plot_store import make_store
from studies.report import build as R
from studies.cli.main import main
from studies.plots import current, draw
from studies.store import load


def _study(name, section, figures=(), errors=(), counts=None, labels=None):
    return R.StudyReport(name=name, spec_path=f"studies/specs/{name}.toml",
                         description=f"{name} study", section=section,
                         grid="depth in {2, 6}; seeds [0]",
                         counts=counts or {"completed": 3, "diverged": 1, "failed": 0},
                         labels=labels or {"healthy": 3, "diverged": 1}, wall_time=1.5,
                         figures=list(figures), errors=list(errors))


@pytest.fixture(scope="module")
def figure_files(tmp_path_factory):
    """Report folder with one study's drawn figures (from the hand-built store)."""
    out = tmp_path_factory.mktemp("report")
    results = current(load(make_store(out / "store")))
    made = draw(results, out / "vanishing", ["vanishing_ratio"])
    return out, [{"stem": f.stem, "caption": f.caption + " <b>&", "png": "vanishing/"
                  f"{f.stem}.png", "pdf": f"vanishing/{f.stem}.pdf"} for f, _, _ in made]


def _summary(out, studies):
    return R.ReportSummary(scale="smoke", out=str(out), markdown=str(out / "index.md"),
                           html=str(out / "index.html"), date="2026-01-01 00:00 UTC",
                           commit="abc123", wall_time=12.5, studies=studies,
                           machine={"host": "h", "cpus": 2}, versions={"numba": "0.68"})


def test_sections_follow_the_report_order(figure_files):
    out, figures = figure_files
    studies = [_study("optimizers", "6"), _study("he2015", "8.1"), _study("gd_variants", "5.1"),
               _study("vanishing", "8", figures), _study("losses", "3"),
               _study("glorot2010", "8.1"), _study("odd", "")]
    studies.sort(key=R._order)
    assert [s.name for s in studies] == ["losses", "gd_variants", "optimizers", "vanishing",
                                         "glorot2010", "he2015", "odd"]
    text = R.render_html(_summary(out, studies))
    headings = re.findall(r"<h[23][^>]*>([^<]+)</h[23]>", text)
    wanted = ["3 Loss functions", "5 Gradient descent", "5.1 Variants",
              "6 Adaptive optimization algorithms", "8 Vanishing and exploding gradients",
              "8.1 Mitigation strategies", "Other studies"]
    assert [h for h in headings if h in wanted] == wanted
    # glorot2010 before he2015 inside 8.1, both after the section 8 study
    assert text.index('id="vanishing"') < text.index('id="glorot2010"') < \
        text.index('id="he2015"')
    md = R.render_markdown(_summary(out, studies))
    assert md.index("## 3 Loss functions") < md.index("### 5.1 Variants") < \
        md.index("## 8 Vanishing") < md.index("### 8.1 Mitigation") < md.index("## Other")


def test_html_is_self_contained_with_captions_and_header(figure_files):
    out, figures = figure_files
    text = R.render_html(_summary(out, [_study("vanishing", "8", figures)]))
    assert text.count('src="data:image/png;base64,') == 1
    assert "http://" not in text and "https://" not in text and "<link" not in text
    assert "<figcaption><b>Figure 1</b>" in text
    assert "First-to-last layer gradient ratio" in text
    assert "&lt;b&gt;&amp;" in text and " <b>&" not in text  # captions are escaped
    for fact in ("smoke", "2026-01-01 00:00 UTC", "abc123", "12.5 s"):
        assert fact in text
    row = re.search(r'<tr><td><a href="#vanishing">vanishing</a></td>.*?</tr>', text).group(0)
    assert re.findall(r'class="num">(\d+)<', row) == ["4", "3", "1", "0"]
    assert "healthy 3, diverged 1" in row and "ok" in row


def test_findings_table_rows_reach_markdown_html_and_csv(figure_files, tmp_path):
    from studies.report.findings_table import write_findings
    out, figures = figure_files
    study = _study("vanishing", "8", figures)
    study.findings = [{"study": "vanishing", "claim": "a | b", "source": "s", "criterion": "c",
                       "measured": "1.5 [1, 2] <x>", "verdict": "partly"}]
    md = R.render_markdown(_summary(out, [study]))
    assert "| vanishing | a \\| b | s | c | 1.5 [1, 2] <x> | partly |" in md
    assert "<td>1.5 [1, 2] &lt;x&gt;</td><td>partly</td>" in R.render_html(_summary(out, [study]))
    write_findings([study], tmp_path / "findings.csv")
    import pandas as pd
    assert pd.read_csv(tmp_path / "findings.csv").to_dict("records") == study.findings


def test_errors_are_listed_in_table_and_section(figure_files):
    out, figures = figure_files
    broken = _study("broken", "", errors=[("spec", "SpecError: bad.toml: not valid TOML")],
                    counts={})
    text = R.render_html(_summary(out, [_study("vanishing", "8", figures), broken]))
    assert text.count("SpecError: bad.toml: not valid TOML") == 2
    md = R.render_markdown(_summary(out, [broken]))
    assert "**error** (spec): SpecError" in md and "| error: spec: SpecError" in md


def test_failing_studies_do_not_stop_the_report(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [unclosed\n")
    mini = tmp_path / "mini.toml"
    mini.write_text('name = "mini"\nsection = "7"\nfigures = ["no_such_figure"]\n'
                    '[fixed]\ndataset = "blobs"\nsteps = 2\nmetrics_every = 1\nwidth = 4\n')
    summary = R.build_report(scale="smoke", out=tmp_path / "report",
                             results_root=tmp_path / "stores", workers=0, show_progress=False,
                             spec_paths={"bad": bad, "mini": mini}, kernel_checks=False)
    by_name = {s.name: s for s in summary.studies}
    assert by_name["bad"].errors[0][0] == "spec" and "not valid TOML" in by_name["bad"].errors[0][1]
    assert by_name["mini"].runs == 0  # an unknown figure name is a spec error: nothing ran
    assert by_name["mini"].errors[0][0] == "spec"
    assert "figures: unknown name 'no_such_figure'" in by_name["mini"].errors[0][1]
    text = (tmp_path / "report" / "index.html").read_text()
    assert "Other studies" in text
    assert "not valid TOML" in text and "unknown name &#x27;no_such_figure&#x27;" in text


def test_gradlab_report_smoke_vanishing_end_to_end(tmp_path, capsys):
    out, stores = tmp_path / "report", tmp_path / "stores"
    code = main(["report", "--scale", "smoke", "--only", "vanishing", "--out", str(out),
                 "--results", str(stores), "--workers", "0", "--quiet"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "index.html" in printed and "vanishing" in printed
    for stem in ("vanishing_profiles", "vanishing_ratio", "vanishing_heatmap",
                 "update_ratio_layers"):
        assert (out / "vanishing" / f"{stem}.png").stat().st_size > 5000
        assert (out / "vanishing" / f"{stem}.pdf").stat().st_size > 5000
    html = (out / "index.html").read_text()
    md = (out / "index.md").read_text()
    assert html.count('src="data:image/png;base64,') == 4
    assert '<h2 id="s8">8 Vanishing and exploding gradients</h2>' in html
    assert "## 8 Vanishing and exploding gradients" in md
    assert "![Figure 1: vanishing_profiles](vanishing/vanishing_profiles.png)" in md
    assert "sigmoid + standard has r = " in md  # the key numbers reach the captions
    assert len(load(stores / "vanishing").runs) == 8  # stored in parts, one per group
    # the findings table: the same rows as the study's finding function on its store
    import pandas as pd
    from studies.analysis.findings import COLUMNS, findings_for
    table = pd.read_csv(out / "findings.csv")
    assert list(table.columns) == list(COLUMNS) and set(table.study) == {"vanishing"}
    expected = findings_for("vanishing", current(load(stores / "vanishing")))
    assert table.verdict.tolist() == [r["verdict"] for r in expected]
    assert table.measured.tolist() == [r["measured"] for r in expected]
    assert md.index("## Findings") < md.index("## Studies")
    assert html.index("<h2>Findings</h2>") < html.index("<h2>Studies</h2>")
    for r in expected:
        assert f"| {r['verdict']} |" in md
    shutil.rmtree(out)


def test_report_user_errors_exit_2(tmp_path, capsys):
    assert main(["report", "--only", "nosuch", "--out", str(tmp_path / "r")]) == 2
    assert "unknown study name(s) ['nosuch']" in capsys.readouterr().err
    assert main(["report", "--workers", "-1", "--out", str(tmp_path / "r")]) == 2
    with pytest.raises(SystemExit) as exit_:
        main(["report", "--scale", "huge"])
    assert exit_.value.code == 2
