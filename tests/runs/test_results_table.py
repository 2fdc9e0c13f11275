"""The README's results table is what `rnnreg report --markdown results/` prints for the runs
committed under results/: a row in one and not the other is a number no command produced."""

from pathlib import Path

from rnnreg.runs.report import collect_runs, format_report

ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_results_table_is_the_report_of_results():
    report = format_report(collect_runs(ROOT / "results"), markdown=True).strip().splitlines()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(report) >= 3  # the header, the rule and one run at least
    for line in report:
        assert line in readme, line
    # and every results row the README shows (any verdict) is one of the report's
    verdicts = ("| reproduction |", "| scaled: ", "| modified: ", "| partial", "| unverified |")
    shown = [line for line in readme.splitlines() if line.startswith("| ") and any(v in line for v in verdicts)]
    assert set(shown) <= set(report)
