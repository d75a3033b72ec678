"""Reports: the ``report.json`` schema and its renderings (Markdown, self-contained HTML with charts)."""
