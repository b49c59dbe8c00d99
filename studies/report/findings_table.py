"""The findings table of the report: one row per finding of every study
(studies.analysis.findings), as findings.csv, a Markdown table and an HTML table."""
import html

from studies.analysis.findings import COLUMNS, table


def _rows(studies):
    return [r for s in studies for r in s.findings]


def write_findings(studies, path):
    """findings.csv: one row per finding, columns studies.analysis.findings.COLUMNS."""
    table(_rows(studies)).to_csv(path, index=False)


def findings_markdown(studies):
    """The '## Findings' section as Markdown lines."""
    def cell(value):
        return str(value).replace("|", "\\|")
    return ["", "## Findings", "", "| " + " | ".join(COLUMNS) + " |",
            "|" + "---|" * len(COLUMNS)] + [
        "| " + " | ".join(cell(r[c]) for c in COLUMNS) + " |" for r in _rows(studies)]


def findings_html(studies):
    """The Findings section as HTML parts."""
    head = "".join(f"<th>{c}</th>" for c in COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(r[c]))}</td>" for c in COLUMNS)
                   + "</tr>" for r in _rows(studies))
    return ["<h2>Findings</h2>", f"<table><tr>{head}</tr>{body}</table>"]
