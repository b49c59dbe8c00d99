"""The study report: every bundled study run, drawn and gathered in Markdown and HTML."""
