"""Results table: runs found on disk, our numbers against the paper references, differences."""

from __future__ import annotations

import json

import pytest

from rnnreg.runs.report import NoRunsFolder, Reference, collect_runs, format_report

ZAREMBA = """name = "zaremba-small"
[data]
corpus = "ptb"
[expect]
metric = "ppl"
[[expect.references]]
source = "Zaremba et al. 2014, Table 1 (non-regularized)"
valid = 120.7
test = 114.5
[[expect.references]]
source = "A test-only number | with a pipe"
test = 110
"""

CHAR = """name = "char-lstm"
[expect]
metric = "bpc"
[[expect.references]]
source = "Some char paper"
valid = 1.3
test = 1.27
"""


def _run(root, name, config, summary=None):
    d = root / name
    d.mkdir(parents=True)
    (d / "config.toml").write_text(config)
    if summary is not None:
        (d / "summary.json").write_text(summary if isinstance(summary, str) else json.dumps(summary))
    return d


def _summary(name, metric, valid, test, status="finished", epochs=13):
    return {"name": name, "metric": metric, "valid": valid, "test": test, "status": status,
            "epochs": epochs, "steps": 8619, "wall_s": 1234.5, "finetuned": False}


@pytest.fixture
def runs(tmp_path):
    _run(tmp_path, "b-zaremba", ZAREMBA, _summary("zaremba-small", "ppl", 121.3, 116.0))
    _run(tmp_path, "a-char", CHAR, _summary("char-lstm", "bpc", 1.3456, None, "stopped", 4))
    _run(tmp_path, "c-zaremba", ZAREMBA, _summary("zaremba-small", "ppl", 119.0, 113.25, "running", 7))
    _run(tmp_path, "d-killed", ZAREMBA)  # no summary.json
    _run(tmp_path, "e-broken", ZAREMBA, '{"name": "zaremba-sm')  # half-written summary
    (tmp_path / "notes").mkdir()  # not a run: ignored
    return tmp_path


def _lines_of(report, run):
    lines = report.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == [run])
    return lines[start:start + 2]


def test_collect_runs_reads_summaries_and_references(runs):
    rows = {r.run: r for r in collect_runs(runs)}
    assert set(rows) == {"a-char", "b-zaremba", "c-zaremba", "d-killed", "e-broken"}
    z = rows["b-zaremba"]
    assert (z.preset, z.metric, z.valid, z.test, z.status, z.epochs) == (
        "zaremba-small", "ppl", 121.3, 116.0, "finished", 13)
    assert z.references == (Reference("Zaremba et al. 2014, Table 1 (non-regularized)", 120.7, 114.5),
                            Reference("A test-only number | with a pipe", None, 110.0))
    assert rows["a-char"].test is None and rows["a-char"].note is None
    assert "no summary.json" in rows["d-killed"].note
    assert "unreadable summary.json" in rows["e-broken"].note


def test_plain_report_numbers_and_differences(runs):
    report = format_report(collect_runs(runs))
    first, second = _lines_of(report, "b-zaremba")
    # Differences are ours - paper, computed here from the inputs above.
    assert first.split() == ["b-zaremba", "zaremba-small", "ppl", "121.30", "116.00", "120.70",
                             "114.50", f"{121.3 - 120.7:+.2f}", f"{116.0 - 114.5:+.2f}", "finished",
                             "unverified", "13", "Zaremba", "et", "al.", "2014,", "Table", "1", "(non-regularized)"]
    # The second reference line repeats no run numbers; its valid difference is undefined.
    assert second.split()[:4] == ["-", "110.00", "-", f"{116.0 - 110.0:+.2f}"]
    assert "b-zaremba" not in second and "121.30" not in second
    char = _lines_of(report, "a-char")[0].split()
    assert char[:9] == ["a-char", "char-lstm", "bpc", f"{1.3456:.3f}", "-", "1.300", "1.270",
                        f"{1.3456 - 1.3:+.3f}", "-"]
    assert char[9:12] == ["stopped", "unverified", "4"]


def test_plain_report_is_aligned_and_groups_presets(runs):
    report = format_report(collect_runs(runs))
    lines = report.splitlines()
    header, rule = lines[0], lines[1]
    assert set(rule.replace(" ", "")) == {"-"}
    # Right-aligned number columns: values end where their header ends.
    end = header.index("ours valid") + len("ours valid")
    assert _lines_of(report, "b-zaremba")[0][:end].endswith("121.30")
    assert _lines_of(report, "a-char")[0][:end].endswith(f"{1.3456:.3f}")
    order = [line.split()[0] for line in lines[2:] if line.split()[:1] and
             line.split()[0] in {"a-char", "b-zaremba", "c-zaremba"}]
    assert order == ["a-char", "b-zaremba", "c-zaremba"]  # same preset next to each other
    notes = [line for line in lines if line.startswith("note:")]
    assert [n.split()[1] for n in notes] == ["d-killed", "e-broken"]
    assert not any(line.startswith(("d-killed", "e-broken")) for line in lines)


def test_presets_stay_together_even_when_directory_names_interleave(tmp_path):
    _run(tmp_path, "1", ZAREMBA, _summary("zaremba-small", "ppl", 120.0, 115.0))
    _run(tmp_path, "2", CHAR, _summary("char-lstm", "bpc", 1.3, 1.28))
    _run(tmp_path, "3", ZAREMBA, _summary("zaremba-small", "ppl", 122.0, 117.0))
    presets = [line.split()[1] for line in format_report(collect_runs(tmp_path)).splitlines()[2:]
               if line[:1].isdigit()]
    assert presets == ["char-lstm", "zaremba-small", "zaremba-small"]


def test_markdown_report(runs):
    report = format_report(collect_runs(runs), markdown=True)
    table = [line for line in report.splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in line.strip("|").split(" | ")] for line in table]
    assert cells[0][:3] == ["run", "preset", "metric"]
    assert all(len(row) == len(cells[0]) for row in cells)  # the escaped pipe does not split
    assert set(cells[1]) <= {":--", "--:"}
    row = next(r for r in cells if r[0] == "b-zaremba")
    assert row[3:9] == ["121.30", "116.00", "120.70", "114.50", f"{121.3 - 120.7:+.2f}",
                        f"{116.0 - 114.5:+.2f}"]
    assert r"A test-only number \| with a pipe" in report
    assert "note: d-killed skipped" in report


def test_root_that_is_itself_a_run_and_runs_without_references(tmp_path):
    _run(tmp_path, "solo", 'name = "custom"\n[expect]\nmetric = "ppl"\n',
         _summary("custom", "ppl", 99.5, 95.0))
    rows = collect_runs(tmp_path / "solo")
    assert [r.run for r in rows] == ["solo"]
    line = format_report(rows).splitlines()[2].split()
    assert line == ["solo", "custom", "ppl", "99.50", "95.00", "-", "-", "-", "-", "finished", "unverified", "13", "-"]


def test_empty_root_and_argument_errors(tmp_path):
    assert collect_runs(tmp_path) == []
    assert format_report([]).strip() == "no finished runs"
    with pytest.raises(NoRunsFolder, match="no folder .*missing.*rnnreg report DIR"):
        collect_runs(tmp_path / "missing")
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(NoRunsFolder, match="is a file"):
        collect_runs(tmp_path / "a-file")
    with pytest.raises(TypeError, match="rows"):
        format_report([{"run": "x"}])


def test_task_metrics_keep_their_significant_digits(tmp_path):
    """A task's MSE of 1e-4 must not print as 0.00 (ppl and accuracy keep two decimals)."""
    from rnnreg.config import Reference
    from rnnreg.runs.report import RunRow, format_report

    rows = [RunRow("adding", tmp_path, "adding-quick", "mse", 0.000126, 0.000112, "finished", 2),
            RunRow("pmnist", tmp_path, "zoneout-pmnist", "accuracy", 60.2, 56.99, "finished", 1,
                   (Reference("paper", test=95.9),))]
    text = format_report(rows)
    assert "0.000126" in text and "0.000112" in text
    assert "56.99" in text and "95.90" in text and "-38.91" in text


def _provenance(diff=None, stopped_by=None, epochs=13, full=True, preset="zaremba-small"):
    return {"preset": preset, "config_diff": {} if diff is None else diff, "stopped_by": stopped_by,
            "epochs": epochs, "preset_epochs": 13, "full_schedule": full}


def test_only_a_reproduction_stands_beside_the_paper(tmp_path):
    """Reproduction: the preset's config for its full schedule. Modified (changed keys named) and
    partial (cut short) runs keep the paper's numbers but no differences; old summaries without
    provenance are unverified."""
    def summary(provenance, status="finished", epochs=13):
        return {**_summary("zaremba-small", "ppl", 121.3, 116.0, status, epochs),
                **({"provenance": provenance} if provenance is not None else {})}

    _run(tmp_path, "1-repro", ZAREMBA, summary(_provenance()))
    _run(tmp_path, "2-modified", ZAREMBA, summary(_provenance(
        {"model.hidden_size": "200 -> 24", "train.max_steps": "0 -> 8"}, "max_steps", 1, False), epochs=1))
    _run(tmp_path, "3-partial", ZAREMBA, summary(_provenance(stopped_by="max_minutes", epochs=4, full=False),
                                                 epochs=4))
    _run(tmp_path, "4-stopped", ZAREMBA, summary(_provenance(stopped_by="signal", epochs=2, full=False),
                                                 "stopped", 2))
    _run(tmp_path, "5-old", ZAREMBA, summary(None))
    rows = {r.run: r for r in collect_runs(tmp_path)}
    assert rows["1-repro"].verdict == "reproduction"
    assert rows["2-modified"].verdict == "modified: model.hidden_size, train.max_steps; partial: max_steps"
    assert rows["3-partial"].verdict == "partial: max_minutes"
    assert rows["4-stopped"].verdict == "partial: signal"
    assert rows["5-old"].verdict == "unverified"
    report = format_report(list(rows.values()), markdown=True)
    cells = {c[0]: c for c in ([x.strip() for x in line.strip("|").split(" | ")]
                               for line in report.splitlines() if line.startswith("|"))}
    header = cells["run"]
    col = {name: header.index(name) for name in ("paper valid", "diff valid", "diff test", "status", "verdict")}
    diff = [f"{121.3 - 120.7:+.2f}", f"{116.0 - 114.5:+.2f}"]
    for run in ("1-repro", "5-old"):
        assert [cells[run][col["diff valid"]], cells[run][col["diff test"]]] == diff
    for run in ("2-modified", "3-partial", "4-stopped"):
        assert cells[run][col["paper valid"]] == "120.70"             # the paper's number, no difference
        assert [cells[run][col["diff valid"]], cells[run][col["diff test"]]] == ["-", "-"]
    assert cells["1-repro"][col["verdict"]] == "reproduction"
    assert cells["2-modified"][col["verdict"]].startswith("modified: model.hidden_size, train.max_steps")
    assert cells["4-stopped"][col["status"]] == "stopped" and cells["5-old"][col["verdict"]] == "unverified"
    # A further reference line of a modified run shows no difference either.
    plain = format_report(list(rows.values())).splitlines()
    second = plain[plain.index(next(line for line in plain if line.startswith("2-modified"))) + 1]
    assert second.split()[:4] == ["-", "110.00", "-", "-"]


def test_fewer_epochs_without_a_budget_is_partial_unless_early_stopping_is_the_presets():
    from rnnreg.runs.report import verdict

    assert verdict(_provenance(epochs=5, full=False), "finished") == "partial: 5 of 13 epochs"
    assert verdict(_provenance(epochs=5, full=True), "finished") == "reproduction"   # the preset's patience
    assert verdict(_provenance(full=False), "failed") == "partial: failed"
    assert verdict(_provenance(preset=None, diff=None) | {"config_diff": None}, "finished") == \
        "modified: not a preset"
    assert verdict(None, "finished") == "unverified"


CACHED = ZAREMBA + """[[expect.references]]
source = "Grave et al. 2016 (cache)"
valid = 100.0
test = 95.0
method = "cache"
[[expect.references]]
source = "Krause et al. 2017"
test = 90.0
method = "dynamic"
"""


def _method_lines(report, source):
    return [line.split() for line in report.splitlines() if source in line]


def test_a_method_reference_stands_beside_the_method_s_numbers(tmp_path):
    """The cache reference gets the summary's cache numbers; the plain references keep the plain
    ones; the dynamic reference, with no number in the summary, the latest evaluations.json record
    (marked, and without a difference)."""
    from rnnreg.runs.evaluations import append_evaluations, evaluation_record

    run = _run(tmp_path, "z", CACHED, {**_summary("zaremba-small", "ppl", 121.3, 116.0),
                                        "valid_cache": 104.5, "test_cache": 99.25})
    append_evaluations(run, [evaluation_record(method="dynamic", split="test", metric="ppl", loss=4.5, value=92.5,
                                               settings={}, checkpoint="best", step=1, batch_size=1)])
    rows = collect_runs(tmp_path)
    assert rows[0].methods == {"cache": (104.5, 99.25), "dynamic": (None, 92.5)}
    assert [r.method for r in rows[0].references] == ["plain", "plain", "cache", "dynamic"]
    report = format_report(rows)
    first = _lines_of(report, "z")[0].split()
    assert first[3:9] == ["121.30", "116.00", "120.70", "114.50", f"{121.3 - 120.7:+.2f}", f"{116.0 - 114.5:+.2f}"]
    [cache] = _method_lines(report, "Grave et al. 2016 (cache) [cache]")
    assert cache[:6] == ["104.50", "99.25", "100.00", "95.00", f"{104.5 - 100.0:+.2f}", f"{99.25 - 95.0:+.2f}"]
    # a later `rnnreg eval`'s number may use other settings than the preset's: no difference
    [dynamic] = _method_lines(report, "Krause et al. 2017 [dynamic, rnnreg eval]")
    assert dynamic[:6] == ["-", "92.50", "-", "90.00", "-", "-"]
    markdown = format_report(rows, markdown=True)
    row = next(line for line in markdown.splitlines() if "[cache]" in line)
    assert [c.strip() for c in row.strip("|").split(" | ")][3:5] == ["104.50", "99.25"]


def test_a_method_reference_without_our_number_and_a_modified_run_show_no_difference(tmp_path, caplog):
    _run(tmp_path, "plain-only", CACHED, _summary("zaremba-small", "ppl", 121.3, 116.0))
    _run(tmp_path, "modified", CACHED, {**_summary("zaremba-small", "ppl", 121.3, 116.0), "test_cache": 99.0,
                                        "provenance": _provenance({"model.hidden_size": "200 -> 24"})})
    _run(tmp_path, "unknown", ZAREMBA + '[[expect.references]]\nsource = "X"\ntest = 1.0\nmethod = "beam"\n',
         _summary("zaremba-small", "ppl", 121.3, 116.0))
    report = format_report(collect_runs(tmp_path))
    lines = _method_lines(report, "Grave et al. 2016 (cache) [cache]")
    assert sorted(line[:6] for line in lines) == [["-", "-", "100.00", "95.00", "-", "-"],    # no cache number yet
                                                  ["-", "99.00", "100.00", "95.00", "-", "-"]]  # modified: no diff
    assert "X [beam]" not in report and "reference 'X' left out" in caplog.text


def test_a_run_that_changed_only_its_size_and_epochs_is_scaled_with_the_values_named():
    """Scaled down (Krueger & Memisevic's 1 x 1000 RNN at 256 units for 8 epochs): named with the
    values, not also "partial" for running its own epochs; any other change makes it "modified"."""
    from rnnreg.runs.report import verdict

    scaled = {"model.hidden_size": "1000 -> 256", "train.epochs": "2000 -> 8"}
    assert verdict(_provenance(scaled, epochs=8, full=False), "finished") == \
        "scaled: model.hidden_size 1000 -> 256, train.epochs 2000 -> 8"
    # Cut short inside its own schedule: still partial.
    assert verdict(_provenance(scaled, "max_minutes", epochs=3, full=False), "finished") == \
        "scaled: model.hidden_size 1000 -> 256, train.epochs 2000 -> 8; partial: max_minutes"
    assert verdict(_provenance(scaled, epochs=3, full=False), "stopped") == \
        "scaled: model.hidden_size 1000 -> 256, train.epochs 2000 -> 8; partial: stopped"
    # Size alone, fewer epochs than the preset's without train.epochs changed: partial.
    assert verdict(_provenance({"model.hidden_size": "200 -> 64"}, epochs=5, full=False), "finished") == \
        "scaled: model.hidden_size 200 -> 64; partial: 5 of 13 epochs"
    assert verdict(_provenance(scaled | {"optim.lr": "0.002 -> 0.001"}, epochs=8, full=False), "finished") == \
        "modified: model.hidden_size, optim.lr, train.epochs"


def test_a_scaled_run_keeps_the_paper_numbers_but_no_difference(tmp_path):
    summary = {**_summary("zaremba-small", "ppl", 150.0, 140.0, epochs=4),
               "provenance": _provenance({"model.hidden_size": "200 -> 64", "train.epochs": "13 -> 4"},
                                         epochs=4, full=False)}
    _run(tmp_path, "scaled", ZAREMBA, summary)
    row, = collect_runs(tmp_path)
    assert row.verdict.startswith("scaled: ") and not row.comparable
    line = format_report([row]).splitlines()[2].split()
    assert line[3:9] == ["150.00", "140.00", "120.70", "114.50", "-", "-"]


def test_a_reference_that_needs_what_rnnreg_lacks_is_named_and_never_compared(tmp_path):
    """zoneout-pmnist's 95.9% is zoneout with recurrent batch normalization (authors' README),
    which rnnreg has not: the report says so even for a reproduction, and sets no difference."""
    config = """name = "zoneout-pmnist"
[[expect.references]]
source = "Krueger et al. 2017"
test = 95.9
needs = "recurrent batch normalization"
"""
    _run(tmp_path, "pmnist", config, {**_summary("zoneout-pmnist", "accuracy", 97.0, 96.5, epochs=13),
                                      "provenance": _provenance()})
    row, = collect_runs(tmp_path)
    assert row.verdict == "reproduction" and row.references[0].needs == "recurrent batch normalization"
    text = format_report([row], markdown=True)
    assert "needs recurrent batch normalization: not in rnnreg, not comparable" in text
    assert "+" not in text.split("| pmnist |")[1].split("|")[7]     # no signed difference
    assert "| - | - |" in text


def test_the_shipped_zoneout_pmnist_reference_says_what_it_needs():
    from rnnreg.config import load_config

    ref, = load_config("zoneout-pmnist").expect.references
    assert ref.test == 95.9 and "recurrent batch normalization" in ref.needs
