"""`drp analyze`: the judge's parsing and failures, UVQ with deduplication, categories, the figures."""

import json

import dspy
import pytest
import numpy as np
from dspy.utils import DummyLM
from PIL import Image

from drpkit.experiments.analysis import ANALYSIS, FIG_CATEGORIES, FIG_UVQ, Judge, analyze, unique_features
from drpkit.serving import LMSpec, StageLMs
from drpkit.programs import DRP, STAGES, DRPConfig, Usage
from drpkit.runner import RunSettings, run
from drpkit.signatures import DifferenceFeature
from test_program import FEATURES, stage_lms


def verdict(category, **criteria):
    return {"comparative": True, "atomic": True, "clear": True, "categorized": True, "consistent": True,
            "category": category} | criteria


GARBAGE = {"comparative": "perhaps", "atomic": True, "clear": True, "categorized": True, "consistent": True,
           "category": "Banana"}
NO_FALLBACK = dspy.ChatAdapter(use_json_adapter_fallback=False)  # one LM call per attempt


def feature(name, definition="d"):
    return {"name": name, "definition": definition, "description": "differs"}


def test_malformed_judge_answers_are_retried():
    judge, usage = Judge(attempts=3), Usage()
    judge.set_lm(DummyLM([GARBAGE, verdict("Emotion", atomic=False)]))
    with dspy.context(adapter=NO_FALLBACK):
        result = judge(DifferenceFeature(**FEATURES[0]), usage=usage)
    assert result["status"] == "ok" and result["category"] == "Emotion"
    assert result["atomic"] is False and result["valid"] is False
    assert usage.stages["judge"]["calls"] == 2


def test_all_garbage_is_a_recorded_failure():
    judge, usage = Judge(attempts=3), Usage()
    judge.set_lm(DummyLM([GARBAGE] * 3))
    with dspy.context(adapter=NO_FALLBACK):
        result = judge(DifferenceFeature(**FEATURES[0]), usage=usage)
    assert result["status"] == "failed" and len(result["problems"]) == 3
    assert all("unparseable" in problem for problem in result["problems"])


def test_features_are_deduplicated_by_name_then_embedding():
    features = [feature("Sentence length"), feature("sentence-length!"), feature("Brevity"), feature("Caps")]
    assert [f["name"] for f in unique_features(features)] == ["Sentence length", "Brevity", "Caps"]

    class Encoder:  # "Brevity" means what "Sentence length" means; "Caps" is apart
        def encode(self, texts):
            vectors = {"Sentence length": [1, 0], "Brevity": [0.96, 0.28], "Caps": [0, 1]}
            return np.array([vectors[text.split(":")[0]] for text in texts])

    assert [f["name"] for f in unique_features(features, Encoder(), 0.9)] == ["Sentence length", "Caps"]
    assert len(unique_features(features, Encoder(), 0.99)) == 3


def make_run(folder, data, extractor, features):
    """A real run folder (runner.run under DummyLM) whose Extract finds `features`, all kept by Validate."""
    lms = stage_lms(extract=[{"reasoning": "r", "differences": features}] * 50,
                    validate=[{"reasoning": "r", "keep": list(range(1, len(features) + 1))}] * 50)
    program = DRP(DRPConfig(selection="random"))
    program.set_stage_lms(lms)
    described = StageLMs(LMSpec(model="writer"), {"extract": LMSpec(model=extractor)}).describe(STAGES)
    settings = RunSettings(data="tiny", split="test", limit=2, num_retrieved=2, num_compared=2, lms=described,
                           adapter="chat")  # the format DummyLM answers in
    run(program, data, settings, folder, concurrency=2)
    return folder


def test_analyze_writes_uvq_categories_and_figures(tiny_data, tmp_path):
    small = make_run(tmp_path / "small-run", tiny_data, "small", [feature("Length"), feature("Capitals")])
    big = make_run(tmp_path / "big-run", tiny_data, "big",
                   [feature("Length"), feature("length!"), feature("Vague"), feature("Mumble")])
    judge = DummyLM({"[Length]": verdict("Structure"), "[length!]": verdict("Structure"),
                     "[Capitals]": verdict("Writing"), "[Vague]": verdict("Semantics", clear=False),
                     "[Mumble]": GARBAGE})
    out = tmp_path / "analysis"
    result = analyze([small, big], judge, out, concurrency=4)

    by_name = {r["name"]: r for r in result["runs"]}
    assert by_name["small-run"]["uvq"] == 2 and by_name["small-run"]["features"] == 8  # 2 samples x 2 items x 2
    assert by_name["big-run"]["uvq"] == 1  # "length!" is "Length"; "Vague" is invalid; "Mumble" unjudged
    assert by_name["big-run"]["judge_failures"] == 4 and by_name["big-run"]["valid"] == 8
    assert by_name["small-run"]["bleu"] == json.loads((small / "metrics.json").read_text())["bleu"]
    assert result["extractors"]["small"]["categories"]["Writing"] == 0.5
    assert result["extractors"]["big"]["categories"] == {"Writing": 0, "Emotion": 0, "Semantics": 0,
                                                         "Structure": 1.0, "Pragmatics": 0}
    saved = json.loads((out / ANALYSIS).read_text())
    assert saved["runs"][1]["judgments"][0]["feature"]["name"] in {"Length", "length!", "Vague", "Mumble"}
    for name in (FIG_UVQ, FIG_CATEGORIES):
        with Image.open(out / name) as image:
            image.verify()
            assert image.format == "PNG" and image.size[0] > 300


def test_with_a_baseline_each_runs_samples_split_at_the_median_uvq_are_scored_beside_it(tiny_data, tmp_path):
    drp = make_run(tmp_path / "drp-run", tiny_data, "small", [feature("Length"), feature("Capitals")])
    judge = DummyLM({"[Length]": verdict("Structure"), "[Capitals]": verdict("Writing")})
    result = analyze([drp], judge, tmp_path / "analysis", concurrency=4, baseline=drp)

    halves = result["runs"][0]["by_uvq"]
    assert [(h["half"], h["samples"], h["uvq"]) for h in halves] == [("fewer", 1, 2), ("more", 1, 2)]
    assert all(h["delta"] == 0 and h["bleu"] == h["baseline_bleu"] for h in halves)  # the run against itself
    with Image.open(tmp_path / "analysis" / FIG_UVQ) as image:
        assert image.size[0] > image.size[1] * 2  # the second panel beside Fig. 2


def test_a_baseline_without_the_runs_samples_is_refused_before_any_judge_call(tiny_data, tmp_path):
    drp = make_run(tmp_path / "drp-run", tiny_data, "small", [feature("Length")])
    other = tmp_path / "other"
    other.mkdir()
    (other / "predictions.jsonl").write_text("")
    judge = DummyLM([])  # any call would fail: none may be made
    with pytest.raises(ValueError, match="lacks 2 of the 2 samples"):
        analyze([drp], judge, tmp_path / "analysis", baseline=other)
