"""DRP end to end on a real vLLM server with the default packaged model (opt-in: pytest --live)."""

import json

import pytest

from drpkit.cli import main
from drpkit.programs.checks import review_problem
from drpkit.assets.models import DEFAULT_MODEL, resolve_model
from drpkit.serving import VLLMServer, find_free_port

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    with VLLMServer(resolve_model(DEFAULT_MODEL), port=find_free_port(), log_path=log) as srv:
        yield srv


def test_drp_runs_on_the_sample_data(server, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DRPKIT_CACHE", str(tmp_path / "cache"))  # real LM calls, none answered from an old cache
    out = tmp_path / "run"
    args = ["run", "--data", "sample", "--split", "test", "--limit", "3", "--out", str(out),
            "--num-retrieved", "4", "--num-compared", "2", "--concurrency", "3",
            "--api-base", server.base_url, "--serve", "never"]
    main(args)
    metrics = json.loads(capsys.readouterr().out)
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and metrics["samples"] == 3
    ok = [row for row in rows if row["status"] == "ok"]
    # the small CPU model refuses or echoes now and then: such a sample is a recorded failure, not a review
    assert ok, [row.get("failures") for row in rows]
    for row in rows:
        if row["status"] != "ok":
            assert row["prediction"] is None and row["failures"][-1]["problems"]
    for row in ok:
        assert len(row["history"]) == 4
        assert review_problem(row["prediction"], [row["summary"]]) is None
        assert row["usage"]["extract"]["calls"] >= 2 and row["usage"]["generate"]["prompt_tokens"] > 0
        assert all(len(c["representatives"]) == 4 for c in row["comparisons"])
    assert metrics["usage_per_sample"]["generate"]["calls"] >= 1
    assert 0 <= metrics["bleu"] <= 100 and 0 <= metrics["rougeL"] <= 1

    # rerunning into the same folder recomputes nothing
    main(args)
    rerun = json.loads(capsys.readouterr().out)
    assert rerun["samples"] == 3
    assert len((out / "predictions.jsonl").read_text().splitlines()) == len(rows)
