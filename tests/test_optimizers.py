"""Prompt optimization: metrics and feedback, each optimizer on tiny data, compiled state, resuming."""

import json

import dspy
import pytest
import sacrebleu
from rouge_score import rouge_scorer

from drpkit.optimizers import (
    OptimizeSettings,
    Portion,
    ReviewMetric,
    load_compiled,
    make_examples,
    optimize,
    review_feedback,
    rouge_l,
    sentence_bleu,
    stage_instructions,
)
from drpkit.programs import DRP, STAGES, DRPConfig
from drpkit.runner import ProgramSettings, RunSettings, run
from drpkit.serving import StageLMs
from scripted_lm import ScriptedLM

PAIRS = [
    ("the cat sat", "the cat sat on the mat"),
    ("I absolutely LOVED it!!!", "I loved it. Amazing album!"),
    ("Great production, tight low end.", "The production is clean: tight low end."),
    ("nothing in common", "completely different words"),
]


def test_portions_of_one_split_never_share_a_user(tiny_data):
    users = [row.user_id for row in tiny_data.rows["test"]]
    small = ProgramSettings(num_compared=1, program=DRPConfig(m=2))
    dev, heldout = make_examples(tiny_data, [Portion("test", 3), Portion("test", 3)], small, seed=1)
    drawn = [e.task.user_id for e in dev + heldout]
    assert sorted(drawn) == sorted(users) and drawn != users  # all six, shuffled
    in_order = make_examples(tiny_data, [Portion("test", 2), Portion("test", 2)], small, shuffle=False)
    assert [[e.task.user_id for e in portion] for portion in in_order] == [users[:2], users[2:4]]
    with pytest.raises(ValueError, match="has 2 usable users left for a portion of 3"):
        make_examples(tiny_data, [Portion("test", 4), Portion("test", 3)], small)


@pytest.mark.parametrize("prediction,reference", PAIRS)
def test_metrics_match_sacrebleu_and_rouge_score(prediction, reference):
    expected_bleu = sacrebleu.sentence_bleu(prediction, [reference], smooth_method="exp", tokenize="13a").score
    assert sentence_bleu(prediction, reference) == pytest.approx(expected_bleu / 100)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    assert rouge_l(prediction, reference) == pytest.approx(scorer.score(reference, prediction)["rougeL"].fmeasure)


def test_metric_values_by_hand():
    # LCS 3 of 3 predicted and 6 reference words: P 1, R 0.5, F 2/3
    assert rouge_l("the cat sat", "the cat sat on the mat") == pytest.approx(2 / 3)
    assert sentence_bleu("the cat sat on the mat", "the cat sat on the mat") == pytest.approx(1.0)
    assert rouge_l("nothing in common", "completely different words") == 0.0
    example = dspy.Example(reference="the cat sat on the mat", task=None)
    prediction = dspy.Prediction(review="the cat sat", failures=[])
    mix = ReviewMetric("mix", bleu_weight=0.25).score("the cat sat", example.reference)
    assert mix == pytest.approx(0.25 * sentence_bleu("the cat sat", example.reference) + 0.75 * 2 / 3)
    with pytest.raises(ValueError):
        ReviewMetric("bertscore")
    assert prediction.review == "the cat sat"


def test_feedback_names_length_tone_rating_and_vocabulary():
    review = "I absolutely love this wonderful album, a great and amazing listen from start to finish, " * 3
    feedback = review_feedback(review, "Boring. Muddy mix, weak songs, overpriced.", rating=1.0)
    assert "Length" in feedback and "write shorter" in feedback
    assert "Rating: the user rated the item 1/5 but the review sounds positive" in feedback
    assert "Vocabulary" in feedback and "muddy" in feedback
    assert "Tone" in feedback
    failed = review_feedback(None, "Fine.", rating=3.0, failure="echoes the prompt's field markers")
    assert "No review was produced: echoes the prompt's field markers" in failed


def test_metric_scores_a_failed_sample_zero_with_its_reason(tiny_data):
    from drpkit.data.tasks import build_task

    task = build_task(tiny_data.rows["test"][0], tiny_data, num_retrieved=3, num_compared=0, m=4)
    example = dspy.Example(task=task, reference=task.reference).with_inputs("task")
    failed = dspy.Prediction(review=None, failures=[{"stage": "generate", "problems": ["empty or too short"]}])
    result = ReviewMetric("rougeL")(example, failed, None, "generate.predict", None)
    assert result.score == 0.0 and "empty or too short" in result.feedback


def settings(optimizer="mipro", stages=("generate",), budget=2, **kwargs):
    return OptimizeSettings(**{
        "data": "tiny", "stages": stages, "optimizer": optimizer, "budget": budget, "candidates": 3,
        "train": Portion("test", 2), "dev": Portion("test", 2), "heldout": Portion("test", 2),
        "num_retrieved": 3, "num_compared": 1, "program": DRPConfig(selection="random"), **kwargs,
    })


def run_optimize(data, out, **kwargs):
    lm, proposer = ScriptedLM(), ScriptedLM()
    with dspy.context(adapter=dspy.ChatAdapter()):
        report = optimize(data, settings(**kwargs), {stage: lm for stage in STAGES}, proposer, out, concurrency=2)
    return report, lm, proposer


@pytest.mark.parametrize("optimizer,stages,budget", [
    ("mipro", ("generate",), 2),
    ("copro", ("summarize", "generate"), 1),
    ("gepa", ("generate",), 12),
])
def test_optimizer_changes_only_the_chosen_stages(tiny_data, tmp_path, optimizer, stages, budget):
    report, _, proposer = run_optimize(tiny_data, tmp_path, optimizer=optimizer, stages=stages, budget=budget)
    changed = {s for s, texts in report["instructions"].items() if texts["before"] != texts["after"]}
    assert "generate" in changed and changed <= set(stages)
    assert "PROPOSED" in report["instructions"]["generate"]["after"]
    assert report["scores"]["dev"]["after"]["metric"] > report["scores"]["dev"]["before"]["metric"]
    assert set(report["scores"]) == {"dev", "heldout"}
    # one request per proposer call; COPRO asks for several completions (n) in one
    assert 0 < report["optimizer"]["llm_calls"]["proposer"] <= proposer.calls["proposer"]
    rows = [json.loads(line) for line in (tmp_path / "candidates.jsonl").read_text().splitlines()]
    assert {r["set"] for r in rows} >= {"dev"} and all(set(r["instructions"]) == set(stages) for r in rows)
    assert any(r["score"] > rows[0]["score"] for r in rows)
    markdown = (tmp_path / "report.md").read_text()
    assert "+++ generate (optimized)" in markdown and "| dev | ROUGE-L |" in markdown


def test_zero_shot_mipro_runs_nothing_on_the_train_set(tiny_data, tmp_path):
    run_optimize(tiny_data, tmp_path, optimizer="mipro")
    train, dev, heldout = make_examples(tiny_data, [Portion("test", 2)] * 3,
                                        ProgramSettings(num_retrieved=3, num_compared=1))
    evaluated = {json.loads(line)["sample"] for line in (tmp_path / "evaluations.jsonl").read_text().splitlines()}
    keys = [{str(e.task.key) for e in examples} for examples in (train, dev, heldout)]
    assert evaluated == keys[1] | keys[2]  # demos it would discard are not bootstrapped


def test_compiled_state_loads_with_the_configured_lms(tiny_data, tmp_path):
    report, _, _ = run_optimize(tiny_data, tmp_path)
    program = DRP(DRPConfig(selection="random"))
    lms = {stage: ScriptedLM() for stage in STAGES}
    load_compiled(program, tmp_path / "program.json", lms)
    assert program.fingerprint() == report["fingerprint"] != DRP(DRPConfig(selection="random")).fingerprint()
    assert stage_instructions(program) == {s: texts["after"] for s, texts in report["instructions"].items()}
    assert all(stage.predictors()[0].lm is lms[name] for name, stage in program.stages().items())
    with dspy.context(adapter=dspy.ChatAdapter()):
        from drpkit.data.tasks import build_task

        review = program(task=build_task(tiny_data.rows["test"][0], tiny_data, 3, 1, 4)).review
    assert review.startswith("I think album 3")  # the scripted LM's answer to a proposed instruction


def test_rerun_replays_evaluations_and_a_larger_budget_goes_on(tiny_data, tmp_path):
    first, lm, _ = run_optimize(tiny_data, tmp_path, budget=2)
    assert lm.calls["task"] > 0
    candidates = (tmp_path / "candidates.jsonl").read_text()
    again, lm2, _ = run_optimize(tiny_data, tmp_path, budget=2)
    assert lm2.calls["task"] == 0 and again["optimizer"]["llm_calls"]["task"] == 0
    assert (tmp_path / "candidates.jsonl").read_text() == candidates  # nothing evaluated twice
    assert again["instructions"] == first["instructions"]
    longer, lm3, _ = run_optimize(tiny_data, tmp_path, budget=4)
    assert lm3.calls["task"] < lm.calls["task"]  # only the new trials' candidates
    assert len((tmp_path / "candidates.jsonl").read_text()) >= len(candidates)
    with pytest.raises(ValueError, match="other settings"):
        run_optimize(tiny_data, tmp_path, metric="bleu")


def test_run_refuses_to_resume_a_folder_made_with_other_prompts(tiny_data, tmp_path):
    settings = RunSettings(data="tiny", limit=1, num_retrieved=3, num_compared=1,
                           program=DRPConfig(selection="random"), adapter="chat")
    program = DRP(settings.program)
    program.set_stage_lms({stage: ScriptedLM() for stage in STAGES})
    run(program, tiny_data, settings, tmp_path, concurrency=1)
    run(program, tiny_data, settings, tmp_path, concurrency=1)  # the same prompts resume
    generate = program.generate.predict
    generate.signature = generate.signature.with_instructions("Write the review.")  # a compiled state, a new version
    with pytest.raises(ValueError, match="other settings \\(program_state\\)"):
        run(program, tiny_data, settings, tmp_path, concurrency=1)


def test_report_tells_a_whitespace_only_change_from_a_new_wording(tmp_path):
    from drpkit.optimizers.report import write_report

    default = "Write the review.\nMatch the\nlength of past reviews."
    instructions = {"extract": (default, default), "summarize": (default, " ".join(default.split())),
                    "generate": (default, "Write a long review.")}
    write_report(tmp_path, {
        "settings": {"stages": ["summarize", "generate"], "data": "tiny", "method": "drp", "metric": "bleu",
                     "train": {"split": "train"}, "dev": {"split": "val"}, "heldout": {"split": "val"},
                     "seed": 0, "budget": 2},
        "optimizer": {"name": "mipro", "wall_seconds": 1.0, "llm_calls": {"task": 1, "proposer": 1}},
        "examples": {"train": 1, "dev": 1, "heldout": 0}, "scores": {}, "program_state": "p.json",
        "fingerprint": "f", "instructions": {k: {"before": b, "after": a} for k, (b, a) in instructions.items()},
    })
    report = (tmp_path / "report.md").read_text()
    extract, summarize, generate = (report.split(f"### {s}")[1] for s in ("extract", "summarize", "generate"))
    assert "unchanged" in extract
    assert "same words, other whitespace" in summarize
    assert "+Write a long review." in generate


def test_popis_summarizer_is_tuned_against_the_review_metric_with_the_generator_held_fixed(tiny_data, tmp_path):
    """POPI trains its summarizer with RL against the downstream objective; here its instruction is optimized."""
    popi = ProgramSettings.for_method("popi", DRPConfig(selection="random"), 3, 1, StageLMs())
    report, _, _ = run_optimize(tiny_data, tmp_path, stages=("infer",), method="popi", program=popi.program,
                                num_retrieved=popi.num_retrieved, num_compared=popi.num_compared)
    instructions = report["instructions"]
    assert set(instructions) == {"extract", "validate", "summarize", "infer", "generate"}
    assert "PROPOSED" in instructions["infer"]["after"]
    assert instructions["generate"]["before"] == instructions["generate"]["after"]
    assert report["scores"]["dev"]["after"]["metric"] > report["scores"]["dev"]["before"]["metric"]
    assert "+++ infer (optimized)" in (tmp_path / "report.md").read_text()


def test_a_stage_the_method_lacks_cannot_be_optimized():
    with pytest.raises(ValueError, match="program has"):
        settings(stages=("infer",))  # drp's program has no POPI summarizer
