"""The report: charts and the self-contained HTML that gathers every stage's results."""
