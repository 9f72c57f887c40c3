"""`run`: rows with intermediates, metrics, resume without recomputation, recorded failures."""

import json
from dataclasses import replace

import pytest
from dspy.utils import DummyLM

from drpkit.programs import DRP, STAGES, DRPConfig
from drpkit.serving import LMSpec, StageLMs
from drpkit.runner import METRICS, PREDICTIONS, PredictionRow, RunSettings, evaluate_file, read_rows, run
from drpkit.runner import execute as runner
from test_program import REVIEW, stage_lms


def make_program(**lms):
    program = DRP(DRPConfig(selection="random"))
    built = stage_lms(**lms, n=200)
    program.set_stage_lms(built)
    return program, built


def settings(limit=None):
    # "chat": the format DummyLM answers in
    return RunSettings(data="tiny", split="test", limit=limit, num_retrieved=3, num_compared=1, adapter="chat")


def rows_by_user(path):
    return {key.user_id: row for key, row in read_rows(path).items()}


def test_run_writes_predictions_and_metrics(tiny_data, tmp_path):
    program, _ = make_program()
    metrics = run(program, tiny_data, settings(), tmp_path, concurrency=3)
    rows = [json.loads(line) for line in (tmp_path / PREDICTIONS).read_text().splitlines()]
    assert len(rows) == 6 and {r["status"] for r in rows} == {"ok"}
    row = rows[0]
    assert row["prediction"] == REVIEW and row["reference"].startswith(("short", "I ", "The", "This", "Cons", "Track"))
    assert {"summary", "comparisons", "usage", "history"} <= set(row)
    assert len(row["comparisons"][0]["representatives"]) == 4
    saved = json.loads((tmp_path / METRICS).read_text())
    assert saved == metrics and metrics["samples"] == 6 and metrics["failed"] == 0
    assert set(metrics) >= {"bleu", "meteor", "rouge1", "rougeL", "signatures"}
    assert metrics["usage_per_sample"]["extract"]["calls"] == 1.0
    # "short and blunt album 3. fine." is user u0's reference: the scripted review shares words with it
    assert 0 < metrics["rouge1"] < 1


def test_rerun_resumes_without_recomputing(tiny_data, tmp_path):
    program, lms = make_program()
    run(program, tiny_data, settings(limit=4), tmp_path, concurrency=2)
    assert len(lms["generate"].history) == 4
    program2, lms2 = make_program()
    metrics = run(program2, tiny_data, settings(limit=6), tmp_path, concurrency=2)
    assert len(lms2["generate"].history) == 2  # only the two new samples
    assert metrics["samples"] == 6


def test_skip_holds_out_the_first_samples_and_a_limit_counts_after_them(tiny_data, tmp_path):
    program, _ = make_program()
    metrics = run(program, tiny_data, replace(settings(limit=2), skip=3), tmp_path, concurrency=1)
    assert sorted(key.user_id for key in read_rows(tmp_path / PREDICTIONS)) == ["u3", "u4"]
    assert metrics["samples"] == 2


def test_a_sample_without_a_usable_review_is_a_final_result(tiny_data, tmp_path):
    echo = {"review": "Review 1 (of Album 0), rating 4/5, titled \"On album 0\":"}
    program, _ = make_program(generate=[echo] * 200)
    metrics = run(program, tiny_data, settings(limit=2), tmp_path, concurrency=1)
    rows = read_rows(tmp_path / PREDICTIONS)
    assert metrics["failed"] == 2 and all(r.status == "failed" for r in rows.values())
    assert all("echoes" in r.failures[-1]["problems"][0] for r in rows.values())
    assert all(r.error == "generate gave no usable answer" and r.summary for r in rows.values())
    assert all(r.usage["generate"]["calls"] == DRPConfig().attempts for r in rows.values())
    program2, lms2 = make_program()
    metrics = run(program2, tiny_data, settings(limit=2), tmp_path, concurrency=1)
    assert metrics["failed"] == 2 and len(lms2["generate"].history) == 0  # a rerun would replay the cache


def test_server_errors_do_not_lose_finished_work(tiny_data, tmp_path):
    class DeadLM(DummyLM):
        def forward(self, *args, **kwargs):
            raise ConnectionError("server went away")

    program, _ = make_program()
    program.generate.set_lm(DeadLM([]))
    metrics = run(program, tiny_data, settings(limit=2), tmp_path, concurrency=2)
    rows = rows_by_user(tmp_path / PREDICTIONS)
    assert metrics["failed"] == metrics["errors"] == 2 and "server went away" in rows["u0"].error
    assert rows["u0"].status == "error"
    program2, lms2 = make_program()  # the server is back: the errors are retried
    metrics = run(program2, tiny_data, settings(limit=2), tmp_path, concurrency=1)
    assert metrics["failed"] == metrics["errors"] == 0 and len(lms2["generate"].history) == 2


def test_resuming_with_other_settings_is_refused(tiny_data, tmp_path):
    program, _ = make_program()
    run(program, tiny_data, settings(limit=1), tmp_path, concurrency=1)
    other = RunSettings(data="tiny", split="test", limit=1, num_retrieved=2, num_compared=1, adapter="chat")
    with pytest.raises(ValueError, match="num_retrieved"):
        run(program, tiny_data, other, tmp_path, concurrency=1)


def test_a_record_without_an_option_added_since_resumes_at_its_default(tiny_data, tmp_path):
    program, _ = make_program()
    lms = StageLMs().describe(STAGES)
    run(program, tiny_data, replace(settings(limit=1), lms=lms), tmp_path, concurrency=1)
    record = json.loads((tmp_path / "run.json").read_text())
    del record["program"]["length_hint"]  # as written before the options existed
    for spec in record["lms"].values():
        del spec["stop_loops"]
    (tmp_path / "run.json").write_text(json.dumps(record))
    assert run(program, tiny_data, replace(settings(limit=2), lms=lms), tmp_path, concurrency=1)["samples"] == 2
    looping = StageLMs(LMSpec(stop_loops=False)).describe(STAGES)
    with pytest.raises(ValueError, match="lms"):
        run(program, tiny_data, replace(settings(limit=2), lms=looping), tmp_path, concurrency=1)
    hinted = RunSettings(data="tiny", split="test", limit=2, num_retrieved=3, num_compared=1, adapter="chat",
                         program=DRPConfig(length_hint=True))
    with pytest.raises(ValueError, match="program"):
        run(program, tiny_data, hinted, tmp_path, concurrency=1)


def test_a_record_with_an_option_since_removed_resumes_if_it_was_off(tiny_data, tmp_path):
    program, _ = make_program()
    run(program, tiny_data, settings(limit=1), tmp_path, concurrency=1)
    record = json.loads((tmp_path / "run.json").read_text())
    record["program"]["dropped_lever"] = 0.0  # as written while the option existed, off
    (tmp_path / "run.json").write_text(json.dumps(record))
    assert run(program, tiny_data, settings(limit=2), tmp_path, concurrency=1)["samples"] == 2
    record["program"]["dropped_lever"] = 1.0  # it was on: the results are another method's
    (tmp_path / "run.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match="program"):
        run(program, tiny_data, settings(limit=2), tmp_path, concurrency=1)


def test_users_without_history_are_reported(tiny_data, tmp_path):
    row = tiny_data.rows["test"][0]
    tiny_data.rows["test"][0] = row.model_copy(update={"profile": []})
    program, _ = make_program()
    metrics = run(program, tiny_data, settings(limit=2), tmp_path, concurrency=1)
    rows = rows_by_user(tmp_path / PREDICTIONS)
    assert rows["u0"].error == "the user has no past reviews"
    assert metrics["samples"] == 2 and metrics["failed"] == 1
    run(program, tiny_data, settings(limit=2), tmp_path, concurrency=1)
    assert len((tmp_path / PREDICTIONS).read_text().splitlines()) == 2  # its row is not written again


def test_an_interrupted_run_keeps_the_samples_in_flight_and_starts_no_new_one(tiny_data, tmp_path, monkeypatch):
    import signal
    import threading
    import time

    started = threading.Barrier(3)  # u0, u1 and u2 in flight at once; u3 waits for a free worker

    def predict(program, task):
        if task.user_id != "u3":
            started.wait(timeout=30)
        if task.user_id == "u0":
            time.sleep(0.2)  # every sample is queued by now
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)  # Ctrl-C
        time.sleep(1.0)
        return PredictionRow(user_id=task.user_id, asin=task.item.asin, timestamp=task.target.timestamp,
                             status="ok", prediction=REVIEW, reference=task.reference)

    monkeypatch.setattr(runner, "predict_one", predict)
    program, _ = make_program()
    # as in a terminal: a background job (CI) may have started with SIGINT ignored
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            run(program, tiny_data, settings(limit=4), tmp_path, concurrency=3)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert set(rows_by_user(tmp_path / PREDICTIONS)) == {"u0", "u1", "u2"}  # kept; u3 never started


def test_a_user_with_several_targets_is_several_samples(tiny_data, tmp_path):
    """Two targets of every user in one split (as the train split has): each is its own sample, written,
    resumed and scored once; `drp evaluate` over the file gives the run's scores."""
    second = [row.model_copy(update={"data": row.profile[-1], "profile": row.profile[:-1]})
              for row in tiny_data.rows["test"]]
    tiny_data.rows["test"] = [r for pair in zip(tiny_data.rows["test"], second) for r in pair]
    program, lms = make_program()
    metrics = run(program, tiny_data, settings(limit=4), tmp_path, concurrency=2)
    rows = read_rows(tmp_path / PREDICTIONS)
    assert len(rows) == 4 and {key.user_id for key in rows} == {"u0", "u1"}
    assert metrics["samples"] == 4
    evaluated = evaluate_file(tmp_path / PREDICTIONS)
    assert evaluated.n == 4 and evaluated.bleu == metrics["bleu"] and evaluated.meteor == metrics["meteor"]
    # ROUGE's bootstrap aggregate depends on the order of the pairs: the file's against the split's
    assert evaluated.rougeL == pytest.approx(metrics["rougeL"], abs=0.01)
    program2, lms2 = make_program()
    assert run(program2, tiny_data, settings(limit=4), tmp_path, concurrency=2)["samples"] == 4
    assert len(lms2["generate"].history) == 0  # both targets of each user were done


def test_a_row_cut_off_by_a_kill_is_set_aside_and_the_run_resumes(tiny_data, tmp_path, capsys):
    program, _ = make_program()
    run(program, tiny_data, settings(limit=2), tmp_path, concurrency=1)
    predictions = tmp_path / PREDICTIONS
    whole = predictions.read_text()
    predictions.write_text(whole + whole.splitlines()[0][:40])  # a third row, killed mid-write
    program2, lms2 = make_program()
    metrics = run(program2, tiny_data, settings(limit=3), tmp_path, concurrency=1)
    assert metrics["samples"] == 3 and len(lms2["generate"].history) == 1
    assert (tmp_path / (PREDICTIONS + ".cut")).read_text() == whole.splitlines()[0][:40] + "\n"
    assert "cut off" in capsys.readouterr().err
    assert len(predictions.read_text().splitlines()) == 3


def test_a_cut_line_that_cannot_be_set_aside_is_a_clear_error_and_the_file_is_untouched(tmp_path, monkeypatch):
    import errno

    from drpkit.runner import WriteFailed, read_jsonl

    path = tmp_path / PREDICTIONS
    text = '{"a": 1}\n{"a": 2'  # the second row cut off by a kill
    path.write_text(text)
    real_open = open

    def full_disk(file, mode="r", *args, **kwargs):
        if str(file).endswith(".cut"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", full_disk)
    with pytest.raises(WriteFailed, match="setting it aside in predictions.jsonl.cut failed .No space left"):
        read_jsonl(path)
    assert path.read_text() == text  # nothing lost: the cut line stays until it can be kept aside


def test_a_longer_timeout_resumes_but_a_run_from_before_inputs_first_prompts_does_not(tiny_data, tmp_path):
    program, _ = make_program()
    run(program, tiny_data, replace(settings(limit=1), lms=StageLMs(LMSpec(timeout=600)).describe(STAGES)), tmp_path,
        concurrency=1)
    longer = replace(settings(limit=2), lms=StageLMs(LMSpec(timeout=3600)).describe(STAGES))
    assert run(program, tiny_data, longer, tmp_path, concurrency=1)["samples"] == 2  # waiting changes no result
    record = json.loads((tmp_path / "run.json").read_text())
    del record["prompt_order"]  # written before prompts put their inputs first: DSPy's order, other prompts
    (tmp_path / "run.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match="prompt_order"):
        run(program, tiny_data, replace(longer, limit=3), tmp_path, concurrency=1)


def test_the_settings_adapter_reaches_every_worker_thread(tiny_data, tmp_path):
    from drpkit.serving import TextAdapter, ThinkingJSONAdapter

    program = DRP(DRPConfig(selection="random", summarize=False))
    lms = stage_lms(n=200)
    lms["generate"] = DummyLM([{"review": REVIEW}] * 10, adapter=TextAdapter(ThinkingJSONAdapter()))
    program.set_stage_lms(lms)
    text = RunSettings.for_method("rag", DRPConfig(selection="random"), 3, 1, StageLMs(), data="tiny", limit=4,
                                  adapter="text")
    metrics = run(program, tiny_data, text, tmp_path, concurrency=3)
    assert metrics["failed"] == 0 and {r.prediction for r in read_rows(tmp_path / PREDICTIONS).values()} == {REVIEW}
    prompts = [call["messages"][-1]["content"] for call in lms["generate"].history]
    assert len(prompts) == 4 and not any("[[ ##" in p or "JSON" in p for p in prompts)


def test_unknown_adapter_is_refused():
    with pytest.raises(ValueError, match="adapter: expected one of"):
        RunSettings(data="tiny", adapter="xml")


def test_metrics_count_what_was_wrong_with_first_answers(tiny_data, tmp_path):
    refusal = {"review": "I'm sorry, but I can't assist with that request."}
    program, _ = make_program(generate=[refusal, {"review": REVIEW}] * 2 + [{"review": REVIEW}] * 100)
    metrics = run(program, tiny_data, settings(limit=4), tmp_path, concurrency=1)
    first = metrics["first_answers"]["generate"]
    assert first == {"samples": 4, "problems": {"a refusal, not an answer": 2}}
    assert metrics["first_answers"]["summarize"]["samples"] == 4
    # the same answers replayed from DSPy's cache cost no call, and were the same first answers
    replayed = [row.model_copy(update={"usage": {stage: {**counts, "calls": 0}
                                                 for stage, counts in row.usage.items()}})
                for row in read_rows(tmp_path / PREDICTIONS).values()]
    assert runner.metrics_of(replayed)["first_answers"]["generate"] == first


def test_a_run_with_the_default_json_adapter_parses_json_answers(tiny_data, tmp_path):
    import dspy

    from test_program import FEATURES

    answers = {"extract": {"reasoning": "r", "differences": FEATURES}, "validate": {"reasoning": "r", "keep": [1]},
               "summarize": {"summary": "Terse, lower-case writer."}, "generate": {"review": REVIEW}}
    lms = {stage: DummyLM([answer] * 50, adapter=dspy.JSONAdapter()) for stage, answer in answers.items()}
    program = DRP(DRPConfig(selection="random"))
    program.set_stage_lms(lms)
    json_settings = RunSettings(data="tiny", split="test", limit=2, num_retrieved=3, num_compared=1)
    assert json_settings.adapter == "json"
    metrics = run(program, tiny_data, json_settings, tmp_path, concurrency=2)
    assert metrics["failed"] == 0 and metrics["first_answers"]["generate"] == {"samples": 2, "problems": {}}
    assert '"review"' in lms["generate"].history[0]["messages"][-1]["content"]  # asked for a JSON object


@pytest.mark.parametrize("options, expected", [
    ([], ("text", "document", False, 0.0)),  # drp run's default profile: the best measured on the CPU model
    (["--profile", "paper"], ("json", "block", False, 0.0)),  # the method as published
    (["--style-hint", "--adapter", "chat"], ("chat", "document", True, 0.0)),  # options given override it
    (["--profile", "paper", "--length-floor", "1.0"], ("json", "block", False, 1.0)),
])
def test_drp_run_starts_from_a_profile_that_options_override(options, expected, monkeypatch):
    from drpkit.cli import commands as cli

    monkeypatch.setattr("drpkit.serving.configure_dspy", lambda *args, **kwargs: None)
    _, shared, _ = cli._setup(cli._parser().parse_args(["run", *options]))
    settings = RunSettings.for_method(**shared, data="sample")
    program = settings.program
    assert (settings.adapter, program.past_reviews, program.style_hint, program.length_floor) == expected


@pytest.mark.parametrize("options, expected", [
    ([], (8, "similarity")),  # the cpu profile's candidates and its pick
    (["--review-candidates", "1"], (1, "length")),  # one review (llama.cpp's advice): the profile's pick goes too
    (["--review-candidates", "2"], (2, "similarity")),
    (["--review-candidates", "3", "--review-pick", "length"], (3, "length")),
])
def test_the_profiles_review_pick_goes_with_its_candidates(options, expected, monkeypatch):
    from drpkit.cli import commands as cli

    monkeypatch.setattr("drpkit.serving.configure_dspy", lambda *args, **kwargs: None)
    _, shared, _ = cli._setup(cli._parser().parse_args(["run", "--method", "rag", *options]))
    program = RunSettings.for_method(**shared, data="sample").program
    assert (program.review_candidates, program.review_pick) == expected


def test_a_profile_leaves_what_needs_past_reviews_out_of_methods_without_them(monkeypatch):
    from drpkit.cli import commands as cli
    from drpkit.runner import PROFILES

    monkeypatch.setitem(PROFILES, "hints", {"adapter": "text", "style_hint": True, "length_floor": 1.0,
                                            "past_reviews": "document", "repetition_penalty": 1.15})
    monkeypatch.setattr("drpkit.serving.configure_dspy", lambda *args, **kwargs: None)
    for method, hints in (("non-p", (False, 0.0, "block", 1.0)), ("rag", (True, 1.0, "document", 1.15))):
        _, shared, _ = cli._setup(cli._parser().parse_args(["run", "--method", method, "--profile", "hints"]))
        settings = RunSettings.for_method(**shared, data="sample")
        program = settings.program
        assert settings.adapter == "text"
        assert (program.style_hint, program.length_floor, program.past_reviews, program.repetition_penalty) == hints


@pytest.mark.parametrize("profile", ["cpu", "paper"])
def test_every_method_takes_every_profile(profile, monkeypatch):
    """A profile sets only what a method can take (RRP refuses a document framing: its template reads a block),
    frames past reviews only for a method that shows some (not non-p, nor POPI's summary alone) and gives review
    candidates to those and to POPI, whose summary read the reviews they are picked against."""
    from drpkit.cli import commands as cli
    from drpkit.programs import METHODS

    monkeypatch.setattr("drpkit.serving.configure_dspy", lambda *args, **kwargs: None)
    for method, options in [(method, []) for method in METHODS] + [("popi", ["--popi-reviews", "2"])]:
        args = ["run", "--method", method, "--profile", profile, *options]
        _, shared, _ = cli._setup(cli._parser().parse_args(args))
        program = RunSettings.for_method(**shared, data="sample").program
        framed = profile == "cpu" and (method not in ("non-p", "rrp", "popi") or bool(options))
        assert (program.past_reviews == "document") == framed, args
        picked = profile == "cpu" and method not in ("non-p", "rrp")
        assert (program.review_candidates > 1) == picked, args


def method_run(method, data, out, limit=None, concurrency=4, **program):
    """Run `method` over the train split of `data` with DummyLMs; returns the metrics and the LMs."""
    settings = RunSettings.for_method(method, DRPConfig(selection="random", **program), 3, 2, StageLMs(), data="tiny",
                                      split="train", limit=limit, adapter="chat")
    drp = DRP(settings.program)
    lms = stage_lms(n=200)
    drp.set_stage_lms(lms)
    return run(drp, data, settings, out, concurrency=concurrency), lms


def test_a_per_user_summary_is_made_once_for_a_users_targets_and_restored_on_resume(train_data, tmp_path):
    _, lms = method_run("popi", train_data, tmp_path, limit=5)  # u0 and u1 whole, u2's first target
    assert len(lms["infer"].history) == 3 and len(lms["generate"].history) == 5
    rows = read_rows(tmp_path / PREDICTIONS).values()
    made = {}
    for row in rows:
        (profile,) = row.user_profiles
        made.setdefault(row.user_id, []).append(profile["made"])
        assert row.usage.get("infer", {}).get("calls", 0) == profile["made"]  # charged where it was made
    assert {user: sorted(flags) for user, flags in made.items()} == {"u0": [False, True], "u1": [False, True],
                                                                     "u2": [True]}
    _, lms = method_run("popi", train_data, tmp_path)  # resumed: u2's second target reuses its first's summary
    assert len(lms["infer"].history) == 3 and len(lms["generate"].history) == 7  # u3, u4, u5 only
    u2 = [row for row in read_rows(tmp_path / PREDICTIONS).values() if row.user_id == "u2"]
    assert [row.user_profiles[0]["made"] for row in u2] == [True, False] and u2[1].summary == u2[0].summary


def test_with_two_targets_a_user_summaries_made_once_per_user_cost_half_the_calls(train_data, tmp_path):
    """What a run over the DPL train split shows (two targets a user): per sample, the per-user summaries'
    calls halve, the generator's stay."""
    calls = {}
    for name, method, program in (("drp", "drp", {}), ("drp-user", "drp", {"summary_scope": "user"}),
                                  ("intsum-user", "intsum", {"summary_scope": "user"}), ("popi", "popi", {}),
                                  ("llm-trsr", "llm-trsr", {})):
        metrics, _ = method_run(method, train_data, tmp_path / name, **program)
        assert metrics["samples"] == 12 and metrics["failed"] == 0
        calls[name] = {stage: usage["calls"] for stage, usage in metrics["usage_per_sample"].items()}
    assert calls == {
        "drp": {"extract": 2.0, "validate": 2.0, "summarize": 1.0, "generate": 1.0},
        "drp-user": {"extract": 1.0, "validate": 1.0, "summarize": 0.5, "generate": 1.0},
        "intsum-user": {"summarize": 0.5, "generate": 1.0},
        "popi": {"infer": 0.5, "generate": 1.0},
        "llm-trsr": {"recap": 0.5, "generate": 1.0},
    }


def test_rows_keep_rrps_levels(tiny_data, tmp_path):
    settings = RunSettings.for_method("rrp", DRPConfig(), 3, 0, StageLMs(), data="tiny", limit=1, adapter="chat")
    program = DRP(settings.program)
    program.set_stage_lms(stage_lms())
    run(program, tiny_data, settings, tmp_path, concurrency=1)
    (row,) = read_rows(tmp_path / PREDICTIONS).values()
    assert set(row.reasoning) == {"user_traits", "item_plan", "draft", "inconsistencies"}
    assert set(row.usage) == {"reason", "crosscheck"} and row.prediction == REVIEW
    assert set(json.loads((tmp_path / "run.json").read_text())["lms"]) == {
        "extract", "validate", "summarize", "generate", "reason", "crosscheck"}  # the LMs of its program's stages


def test_a_run_with_an_archive_keeps_its_rows_there_without_references_and_is_restored_from_it(tiny_data, tmp_path):
    archive = tmp_path / "archive"
    program, _ = make_program()
    metrics = run(program, tiny_data, settings(limit=4), tmp_path / "out", concurrency=2, archive=archive)
    kept = [json.loads(line) for line in (archive / PREDICTIONS).read_text().splitlines()]
    assert len(kept) == 4 and all("reference" not in row and row["prediction"] for row in kept)
    assert (archive / "run.json").read_text() == (tmp_path / "out" / "run.json").read_text()
    # on another machine: a new folder, restored from the archive and the data, computes only the new samples
    program2, lms2 = make_program()
    again = run(program2, tiny_data, settings(limit=6), tmp_path / "elsewhere", concurrency=2, archive=archive)
    assert len(lms2["generate"].history) == 2
    restored = read_rows(tmp_path / "elsewhere" / PREDICTIONS)
    first = read_rows(tmp_path / "out" / PREDICTIONS)
    assert all(restored[key] == row for key, row in first.items())  # references and all
    assert again["samples"] == 6 and again["bleu"] != metrics["bleu"]
    assert len((archive / PREDICTIONS).read_text().splitlines()) == 6


def test_an_archive_made_with_other_settings_is_refused(tiny_data, tmp_path):
    from drpkit.runner import SettingsRefused

    archive = tmp_path / "archive"
    program, _ = make_program()
    run(program, tiny_data, settings(limit=2), tmp_path / "out", concurrency=2, archive=archive)
    other = replace(settings(limit=2), num_retrieved=1)
    with pytest.raises(SettingsRefused, match="num_retrieved"):
        run(make_program()[0], tiny_data, other, tmp_path / "elsewhere", concurrency=2, archive=archive)


def test_retry_failed_computes_the_failed_samples_again(tiny_data, tmp_path):
    echo = {"review": "Review 1 (of Album 0), rating 4/5, titled \"On album 0\":"}
    program, _ = make_program(generate=[echo] * 200)
    run(program, tiny_data, settings(limit=2), tmp_path, concurrency=1)
    program2, lms2 = make_program()
    metrics = run(program2, tiny_data, settings(limit=2), tmp_path, concurrency=1, retry_failed=True)
    assert metrics["failed"] == 0 and len(lms2["generate"].history) == 2
    assert all(row.status == "ok" for row in read_rows(tmp_path / PREDICTIONS).values())


def test_retry_failed_makes_a_failed_per_user_summary_again(tiny_data, tmp_path):
    def popi(**lms):
        program = DRP(DRPConfig(selection="random", user_summary="popi", summarize=False))
        built = stage_lms(**lms, n=200)
        program.set_stage_lms(built)
        return program, built

    program, _ = popi(infer=[{"preferences": ""}] * 200)
    assert run(program, tiny_data, settings(limit=2), tmp_path, concurrency=1)["failed"] == 2
    program2, lms2 = popi()
    metrics = run(program2, tiny_data, settings(limit=2), tmp_path, concurrency=1, retry_failed=True)
    assert metrics["failed"] == 0 and len(lms2["infer"].history) == 2
