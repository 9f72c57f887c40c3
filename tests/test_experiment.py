"""`drp experiment`: grid files, cells, resuming without LM calls, the results table."""

import csv
import io
import json
from pathlib import Path

import pytest

from drpkit.experiments import load_grid, run_grid
from drpkit.runner import PREDICTIONS, read_rows
from test_program import stage_lms

ROOT = Path(__file__).resolve().parents[1]

GRID = """
methods = ["non-p", "cicl", "drp"]
temperatures = [[0, 0.5]]

[run]
num_retrieved = 2
num_compared = 1
selection = "random"
adapter = "chat"  # the format DummyLM answers in

[variants]
no-validate = { methods = ["drp"], validate = false }

[models.small]
model = "small"
api_base = "http://127.0.0.1:8000/v1"
extract = { model = "thinker", api_base = "http://127.0.0.1:8001/v1", max_tokens = 4096 }

[data.sample]
source = "sample"
limit = 2
"""
GOOD_REVIEW = ("I love this album and the songs are great, the music is good and I like the sound of it. The band "
               "plays with real energy on every track, the singer has a warm voice, and the production never gets "
               "in the way. A few slower songs drag a little in the middle, but the closing track makes up for it. "
               "I would recommend it to anyone who enjoys this kind of music.")


class CountingLMs:
    """DummyLMs for each cell, counted; the cells of the `drp` base row answer with a better review."""

    def __init__(self):
        self.built = []

    def __call__(self, lms):
        better = len(self.built) in (4, 5)  # the two `drp` base cells: cells run in grid order
        self.built.append(stage_lms(generate=[{"review": GOOD_REVIEW}] * 200 if better else None, n=200))
        return self.built[-1]

    @property
    def calls(self):
        return sum(len(lm.history) for lms in self.built for lm in lms.values())


@pytest.fixture
def grid_file(tmp_path):
    path = tmp_path / "grid.toml"
    path.write_text(GRID)
    return path


def test_grid_cells_are_named_and_configured(grid_file):
    grid = load_grid(grid_file)
    cells = {cell.id: cell for cell in grid.cells()}
    assert list(cells) == [f"{row}-small-t{t}-sample" for row in ("non-p-base", "cicl-base", "drp-base",
                                                                  "drp-no-validate") for t in ("0", "0.5")]
    settings = cells["drp-no-validate-small-t0.5-sample"].settings
    assert settings.program.validate is False and settings.program.selection == "random"
    assert settings.num_compared == 1 and settings.split == "test" and settings.limit == 2
    assert settings.lms["extract"] == settings.lms["extract"] | {"model": "thinker", "max_tokens": 4096,
                                                                 "temperature": 0.5}
    assert settings.lms["generate"]["model"] == "small"
    assert cells["non-p-base-small-t0-sample"].settings.num_retrieved == 0
    assert cells["cicl-base-small-t0-sample"].settings.program.contrast is True


@pytest.mark.parametrize("change, message", [
    ("[run]\nnum_retreived = 2", "unknown key"),
    ('[variants]\nsum = { methods = ["non-p"], summarize = true }', "contradicts method 'non-p'"),
    ('[models.base]\nmodel = "x"', "model name 'base'"),
    ('[run]\nprofile = "gpu"', "profile: expected one of"),
])
def test_bad_grids_are_refused_before_anything_runs(tmp_path, change, message):
    path = tmp_path / "bad.toml"
    path.write_text('methods = ["non-p"]\n[data.s]\nsource = "sample"\n' + change)
    with pytest.raises(ValueError, match=message):
        load_grid(path)


def test_grid_resumes_without_recomputation_and_writes_the_table(grid_file, tmp_path):
    out = tmp_path / "out"
    lms = CountingLMs()
    markdown = run_grid(load_grid(grid_file), out, build_lms=lms)
    assert lms.calls > 0
    first_csv = (out / "results.csv").read_text()

    checked = []
    again = CountingLMs()
    assert run_grid(load_grid(grid_file), out, build_lms=again, check_servers=checked.append) == markdown
    assert again.calls == 0 and checked == []  # every cell finished: no LM call, no server needed
    assert (out / "results.csv").read_text() == first_csv  # seconds come from the rows, not the rerun

    rows = list(csv.DictReader(io.StringIO(first_csv)))
    assert [(r["method"], r["variant"], r["temperatures"]) for r in rows] == [
        ("non-p", "base", "0 0.5"), ("cicl", "base", "0 0.5"), ("drp", "base", "0 0.5"),
        ("drp", "no-validate", "0 0.5")]
    assert [r["best"] for r in rows] == ["", "", "bleu meteor rouge1 rougeL", ""]
    drp = rows[2]
    assert float(drp["calls"]) == 4 and drp["cells"] == "drp-base-small-t0-sample drp-base-small-t0.5-sample"
    per_cell = [round(sum(r.seconds for r in read_rows(out / cell / PREDICTIONS).values()) / 2, 2)
                for cell in drp["cells"].split()]
    assert (float(drp["seconds_min"]), float(drp["seconds_max"])) == (min(per_cell), max(per_cell))

    table = (out / "results.md").read_text()
    assert "| drp | base | 0, 0.5 | **" in table and "| non-p | base | 0, 0.5 | 0." in table
    assert "Metric signatures" in table and "nrefs:1|case:mixed" in table and "use_stemmer:False" in table
    assert json.loads((out / "drp-base-small-t0-sample" / "run.json").read_text())["method"] == "drp"


def test_cli_experiment_reports_finished_grid(grid_file, tmp_path, monkeypatch, capsys):
    from drpkit.cli import commands as cli

    out = tmp_path / "out"
    run_grid(load_grid(grid_file), out, build_lms=CountingLMs())
    monkeypatch.setattr("drpkit.serving.configure_dspy", lambda *args, **kwargs: None)  # keep the tests' dspy settings
    cli.main(["experiment", str(grid_file), "--out", str(out)])
    assert "| cicl | base |" in capsys.readouterr().out


def test_cli_experiment_with_error_rows_says_so_and_exits_1(grid_file, tmp_path, monkeypatch, capsys):
    from drpkit.cli import commands as cli

    out = tmp_path / "out"
    run_grid(load_grid(grid_file), out, build_lms=CountingLMs())
    predictions = out / "cicl-base-small-t0-sample" / PREDICTIONS
    first, *rest = predictions.read_text().splitlines()
    row = json.loads(first) | {"status": "error", "error": "ConnectionError: the server died", "prediction": None}
    predictions.write_text("\n".join([json.dumps(row), *rest]) + "\n")  # as a run whose server died leaves it
    monkeypatch.setattr("drpkit.serving.configure_dspy", lambda *args, **kwargs: None)
    with pytest.raises(SystemExit) as exit:
        cli.main(["experiment", str(grid_file), "--out", str(out), "--report-only"])
    assert exit.value.code == 1
    assert "samples ended in an error in cicl-base-small-t0-sample (1); rerun" in capsys.readouterr().err


def test_report_only_tabulates_the_finished_cells_without_a_server(grid_file, tmp_path, monkeypatch, capsys):
    from drpkit.cli import commands as cli

    out = tmp_path / "out"
    grid = load_grid(grid_file)
    run_grid(grid, out, build_lms=CountingLMs())
    for cell in ("drp-no-validate-small-t0-sample", "drp-no-validate-small-t0.5-sample"):
        (out / cell / PREDICTIONS).unlink()  # as if the grid had stopped before its last row

    monkeypatch.setattr("drpkit.serving.configure_dspy", lambda *args, **kwargs: None)
    monkeypatch.setattr(cli, "check_models", lambda lms: pytest.fail("--report-only asked for a server"))
    cli.main(["experiment", str(grid_file), "--out", str(out), "--report-only"])
    table = capsys.readouterr().out
    assert "| drp | base | 0, 0.5 | **" in table and "| drp | no-validate |" not in table
    assert "Not run yet (no row above): `drp-no-validate-small-t0-sample`, `drp-no-validate-small-t0.5-sample`." in table
    rows = list(csv.DictReader(io.StringIO((out / "results.csv").read_text())))
    assert [r["variant"] for r in rows] == ["base", "base", "base"]


def test_only_runs_the_named_rows_and_tabulates_the_rest_from_what_is_there(grid_file, tmp_path, monkeypatch,
                                                                             capsys):
    from drpkit.cli import commands as cli

    out = tmp_path / "out"
    monkeypatch.setattr("drpkit.serving.configure_dspy", lambda *args, **kwargs: None)
    monkeypatch.setattr(cli, "check_models", lambda lms: None)
    run_grid(load_grid(grid_file), out, build_lms=CountingLMs(), compute=["non-p", "drp/no-validate"])
    assert sorted(p.name for p in out.iterdir() if (p / PREDICTIONS).exists()) == [
        "drp-no-validate-small-t0-sample", "drp-no-validate-small-t0.5-sample",
        "non-p-base-small-t0-sample", "non-p-base-small-t0.5-sample"]
    with pytest.raises(SystemExit) as stopped:
        cli.main(["experiment", str(grid_file), "--out", str(out), "--only", "dpr"])
    assert stopped.value.code == 2 and "drp: error: --only ['dpr']: no such row" in capsys.readouterr().err


def test_rows_are_compared_with_the_baseline_by_paired_bootstrap(grid_file, tmp_path):
    from drpkit import metrics

    grid_file.write_text('baseline = "non-p"\n' + GRID)
    out = tmp_path / "out"
    table = run_grid(load_grid(grid_file), out, build_lms=CountingLMs())
    rows = list(csv.DictReader(io.StringIO((out / "comparisons.csv").read_text())))
    assert {(r["row"], r["baseline"], r["pairs"]) for r in rows} == {
        (row, "non-p", "4") for row in ("cicl", "drp", "drp/no-validate")}
    assert {r["score"] for r in rows} == set(metrics.SCORES)

    def pooled(row):  # both temperatures' predictions, sample by sample
        return [r.prediction or "" for t in ("0", "0.5")
                for r in read_rows(out / f"{row}-small-t{t}-sample" / PREDICTIONS).values()]

    references = [r.reference for t in ("0", "0.5") for r in read_rows(out / f"drp-base-small-t{t}-sample" / PREDICTIONS).values()]
    gap = metrics.score(pooled("drp-base"), references).bleu - metrics.score(pooled("non-p-base"), references).bleu
    drp_bleu = next(r for r in rows if r["row"] == "drp" and r["score"] == "bleu")
    assert float(drp_bleu["delta"]) == pytest.approx(gap, abs=1e-5) and gap > 0
    assert float(drp_bleu["low"]) <= float(drp_bleu["delta"]) <= float(drp_bleu["high"])
    assert "Against `non-p`" in table and "| drp/no-validate | non-p | 4 |" in table and "differences: `paired-bootstrap" in table


def compared_with(grid_file, out, baseline: str) -> tuple[str, list[dict]]:
    """The table and comparisons of the test grid at one temperature, with a variant `longer` of non-p and drp,
    against `baseline` (the grid's line)."""
    grid = GRID.replace("temperatures = [[0, 0.5]]", "temperatures = [0]").replace(
        "[variants]", '[variants]\nlonger = { methods = ["non-p", "drp"], attempts = 5 }')
    grid_file.write_text(f"baseline = {baseline}\n" + grid)
    table = run_grid(load_grid(grid_file), out, build_lms=CountingLMs())
    return table, list(csv.DictReader(io.StringIO((out / "comparisons.csv").read_text())))


def test_a_methods_baseline_is_that_method_in_the_rows_own_variant(grid_file, tmp_path):
    table, rows = compared_with(grid_file, tmp_path / "out", '"non-p"')
    # drp/longer against non-p/longer (the baseline of its variant); drp/no-validate, a variant without non-p,
    # against non-p as published
    assert {(r["row"], r["baseline"]) for r in rows} == {
        ("cicl", "non-p"), ("drp", "non-p"), ("drp/no-validate", "non-p"),
        ("drp/longer", "non-p/longer")}
    assert "| drp/longer | non-p/longer | 2 |" in table


def test_a_pair_of_rows_is_compared_once_under_the_first_baseline_that_names_it(grid_file, tmp_path):
    table, rows = compared_with(grid_file, tmp_path / "out", '["non-p", "non-p/longer"]')
    pairs = [(r["row"], r["baseline"]) for r in rows if r["score"] == "bleu"]
    # drp/longer meets non-p/longer under "non-p" (its variant's) and is not compared again under "non-p/longer"
    assert sorted(pairs) == sorted([
        ("cicl", "non-p"), ("drp", "non-p"), ("drp/no-validate", "non-p"), ("drp/longer", "non-p/longer"),
        ("non-p", "non-p/longer"), ("cicl", "non-p/longer"), ("drp", "non-p/longer"),
        ("drp/no-validate", "non-p/longer")])
    assert table.count("| drp/longer | non-p/longer |") == 1


def test_a_baseline_that_names_no_row_is_refused(grid_file):
    grid_file.write_text('baseline = ["non-p", "drp/no-summarize"]\n' + GRID)
    with pytest.raises(ValueError, match=r"baseline: \['drp/no-summarize'\] name no row"):
        load_grid(grid_file)


def test_adapter_is_a_run_option_that_variants_change(grid_file):
    grid_file.write_text(GRID.replace("[variants]", '[variants]\ntext = { methods = ["non-p"], adapter = "text" }'))
    cells = {cell.id: cell for cell in load_grid(grid_file).cells()}
    assert cells["non-p-text-small-t0-sample"].settings.adapter == "text"
    assert cells["non-p-base-small-t0-sample"].settings.adapter == "chat"
    grid_file.write_text('adapter = "text"\n' + GRID)
    with pytest.raises(ValueError, match=r"set these under \[run\]"):
        load_grid(grid_file)


def test_publish_puts_the_grids_tables_into_a_document(grid_file, tmp_path, capsys):
    from drpkit.cli import commands as cli

    grid_file.write_text('baseline = "non-p"\n' + GRID)
    out = tmp_path / "runs" / "grid"
    run_grid(load_grid(grid_file), out, build_lms=CountingLMs())
    readme = tmp_path / "README.md"
    readme.write_text("# Tool\n\n## Results\n\n<!-- results: runs/grid/results.md -->\nold numbers\n<!-- /results -->\n\nEnd.\n")
    cli.main(["publish", str(readme)])
    text = readme.read_text()
    assert "old numbers" not in text and text.startswith("# Tool\n\n## Results\n\n<!-- results: runs/grid/results.md -->\n")
    assert "| drp | base | 0, 0.5 | **" in text and "Against `non-p`" in text and text.endswith("<!-- /results -->\n\nEnd.\n")
    assert "\n#### sample: " in text and "\n# Results" not in text  # the grid's headings sit under the document's
    assert "results from" in capsys.readouterr().err
    before = text
    cli.main(["publish", str(readme)])
    assert readme.read_text() == before  # refreshing again changes nothing


def test_publish_names_a_missing_results_file(tmp_path):
    from drpkit.experiments import publish

    readme = tmp_path / "README.md"
    readme.write_text("<!-- results: runs/none/results.md -->\n<!-- /results -->\n")
    with pytest.raises(FileNotFoundError, match="run its grid"):
        publish(readme)
    readme.write_text("no block\n")
    with pytest.raises(ValueError, match="no results block"):
        publish(readme)


def test_an_external_predictions_file_is_a_row_compared_like_the_others(grid_file, tmp_path):
    grid = GRID.replace("temperatures = [[0, 0.5]]", "temperatures = [0]")
    grid_file.write_text('baseline = ["plain"]\n' + grid + '\n[external.plain]\npredictions = "plain/predictions.jsonl"\n')
    out = tmp_path / "out"
    run_grid(load_grid(grid_file), out, build_lms=CountingLMs())
    # rows made outside the program: here a copy of the non-p cell's, and one row of no sample of the grid
    (out / "plain").mkdir()
    rows = (out / "non-p-base-small-t0-sample" / PREDICTIONS).read_text()
    stray = json.dumps({"user_id": "nobody", "asin": "x", "status": "ok", "prediction": "x", "reference": "y"})
    (out / "plain" / PREDICTIONS).write_text(rows + stray + "\n")
    table = run_grid(load_grid(grid_file), out, build_lms=CountingLMs(), compute=())
    cells = {line.split("|")[1].strip(): line.split("|") for line in table.splitlines()
             if line.startswith(("| plain | external |", "| non-p | base |"))}
    assert cells["plain"][4:8] == cells["non-p"][4:8]  # the same predictions, the same scores
    assert cells["plain"][-3].strip() == "2"  # the grid's two samples, not the stray row
    comparisons = list(csv.DictReader(io.StringIO((out / "comparisons.csv").read_text())))
    assert {r["row"] for r in comparisons} == {"non-p", "cicl", "drp", "drp/no-validate"}
    assert all(float(r["delta"]) == 0 and r["significant"] == "0" for r in comparisons if r["row"] == "non-p")
    assert "Against `plain`" in table


def test_external_rows_are_checked(grid_file):
    grid_file.write_text(GRID + '\n[external.plain]\ndata = "other"\npredictions = "p.jsonl"\n')
    with pytest.raises(ValueError, match="external 'plain': needs `predictions`"):
        load_grid(grid_file)


def test_a_grid_starts_from_the_paper_unless_a_variant_names_a_profile(grid_file, monkeypatch):
    from drpkit.runner import PROFILES

    monkeypatch.setitem(PROFILES, "hints", {"past_reviews": "demos", "style_hint": True, "length_floor": 1.0})
    grid_file.write_text(GRID.replace("[variants]", '[variants]\nhints = { profile = "hints" }'))
    cells = {cell.id: cell.settings for cell in load_grid(grid_file).cells()}
    base, hints = cells["drp-base-small-t0-sample"], cells["drp-hints-small-t0-sample"]
    assert (base.program.past_reviews, base.program.style_hint, base.program.length_floor) == ("block", False, 0.0)
    assert (hints.program.past_reviews, hints.program.style_hint, hints.program.length_floor) == ("demos", True, 1.0)
    non_p = cells["non-p-hints-small-t0-sample"]  # no past reviews: what comes from them does not apply
    assert not non_p.program.style_hint and not non_p.program.length_floor
    grid_file.write_text(GRID.replace("[run]", '[run]\nprofile = "cpu"'))
    assert load_grid(grid_file).cells()[0].settings.adapter == "chat"  # the grid's [run] overrides its profile


def test_the_table_shows_the_generators_prompt_tokens_beside_the_others(tmp_path):
    """POPI's claim is a shorter context for the generator: its prompt tokens, read beside rag's."""
    from drpkit.experiments.table import render_csv, render_markdown, table_rows

    path = tmp_path / "grid.toml"
    path.write_text('methods = ["rag", "popi", "rrp"]\n[data.sample]\nsource = "sample"\nlimit = 2\n')
    grid = load_grid(path)
    usage = {"rag": {"generate": 900}, "popi": {"infer": 700, "generate": 150},
             "rrp": {"reason": 950, "crosscheck": 1100}}
    metrics = {cell.id: {"bleu": 1.0, "meteor": 0.1, "rouge1": 0.1, "rougeL": 0.1, "length_ratio": 0.5,
                         "seconds_per_sample": 1.0, "samples": 2, "failed": 0,
                         "signatures": {"bleu": "b", "meteor": "m", "rouge": "r"},
                         "usage_per_sample": {stage: {"calls": 1.0, "prompt_tokens": tokens, "completion_tokens": 10.0}
                                              for stage, tokens in usage[cell.method].items()}}
               for cell in grid.cells()}
    rows = {row.method: row for row in table_rows(grid, metrics)}
    assert {method: row.mean("generator_prompt_tokens") for method, row in rows.items()} == {
        "rag": 900, "popi": 150, "rrp": 2050}  # Infer's tokens are the summary's, not the generator's
    assert rows["popi"].mean("prompt_tokens") == 850
    table = render_markdown(grid, list(rows.values()), metrics)
    assert "| generator prompt tokens / sample |" in table and "| popi | base | 0 |" in table
    assert "infer `drp-default`" in table and "reason `drp-default`" in table  # the stages the rows' programs have
    assert "generator_prompt_tokens_min" in render_csv(list(rows.values())).splitlines()[0]


@pytest.mark.parametrize("path", sorted(ROOT.glob("experiments/grids/*.toml")), ids=lambda path: path.stem)
def test_the_shipped_grids_are_valid(path):
    grid = load_grid(path)
    assert grid.cells() and set(grid.methods) <= {cell.method for cell in grid.cells()}


def test_a_grids_archive_alone_gives_its_table_back(grid_file, tmp_path):
    grid = GRID.replace("temperatures = [[0, 0.5]]", "temperatures = [0]")
    grid_file.write_text('baseline = ["plain"]\n' + grid + '\n[external.plain]\npredictions = "plain/predictions.jsonl"\n')
    out, archive = tmp_path / "out", tmp_path / "archive"
    run_grid(load_grid(grid_file), out, build_lms=CountingLMs(), compute=["non-p", "drp"], archive=archive)
    (out / "plain").mkdir()  # a row made outside the program enters the archive with the table
    (out / "plain" / PREDICTIONS).write_text((out / "non-p-base-small-t0-sample" / PREDICTIONS).read_text())
    table = run_grid(load_grid(grid_file), out, build_lms=CountingLMs(), compute=(), archive=archive)
    assert sorted(p.name for p in archive.iterdir() if p.name != ".lock") == [
        "comparisons.csv", "drp-base-small-t0-sample", "non-p-base-small-t0-sample", "plain", "results.csv",
        "results.md"]
    assert (archive / "results.md").read_text() == table
    assert "reference" not in (archive / "plain" / PREDICTIONS).read_text()
    restored = run_grid(load_grid(grid_file), tmp_path / "elsewhere", build_lms=CountingLMs(), compute=(),
                        archive=archive)
    assert restored == table and "Against `plain`" in restored


def test_a_second_grid_into_the_same_archive_is_refused(grid_file, tmp_path):
    from drpkit.runner import FolderBusy, folder_lock

    archive = tmp_path / "archive"
    with folder_lock(archive), pytest.raises(FolderBusy, match="in use by another drp process"):
        run_grid(load_grid(grid_file), tmp_path / "out", build_lms=CountingLMs(), compute=(), archive=archive)
