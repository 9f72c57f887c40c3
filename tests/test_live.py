"""DRP, and each method beyond the paper's comparison, end to end on a real vLLM server with the default packaged
model (opt-in: pytest --live)."""

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


@pytest.mark.parametrize("method, stage", [("popi", "infer"), ("rrp", "reason"), ("llm-trsr", "recap"),
                                           ("p-db", "distill")])
def test_each_method_beyond_drps_comparison_runs_on_one_sample(server, tmp_path, capsys, monkeypatch, method, stage):
    monkeypatch.setenv("DRPKIT_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    main(["run", "--data", "sample", "--split", "test", "--limit", "1", "--out", str(out), "--method", method,
          "--num-retrieved", "4", "--user-reviews", "4", "--similar-users", "1", "--concurrency", "1",
          "--api-base", server.base_url, "--serve", "never"])
    metrics = json.loads(capsys.readouterr().out)
    (row,) = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert metrics["samples"] == 1 and row["status"] in ("ok", "failed"), row.get("error")
    # the method's own stage ran on the server; a small CPU model's unusable answer is a recorded failure
    assert row["usage"][stage]["calls"] >= 1 and row["usage"][stage]["prompt_tokens"] > 0
    if row["status"] == "ok":
        assert review_problem(row["prediction"], [row["summary"] or ""]) is None
    else:
        assert row["prediction"] is None and row["failures"][-1]["problems"]
    if method == "rrp":
        assert len(row["history"]) == 4 and (row["status"] != "ok" or row["reasoning"]["user_traits"])
    else:  # the per-user summary was made for this sample, from the user's reviews before their target
        assert [profile["made"] for profile in row["user_profiles"] if profile["kind"] == method] == [True]
        assert (row["history"] == []) == (method == "popi")  # POPI's summary in place of the history


def test_generate_continues_a_document_of_the_users_reviews(server, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DRPKIT_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    main(["run", "--data", "sample", "--split", "test", "--limit", "1", "--out", str(out), "--method", "rag",
          "--past-reviews", "document", "--repetition-penalty", "1.15", "--num-retrieved", "4",
          "--concurrency", "1", "--api-base", server.base_url, "--serve", "never"])
    (row,) = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    # the server took the open document (continue_final_message), and the model wrote on as the customer
    assert row["status"] == "ok", row.get("failures") or row.get("error")
    assert len(row["history"]) == 4 and review_problem(row["prediction"], []) is None
    assert not row["prediction"].lstrip().startswith(("Review:", "Item:"))

