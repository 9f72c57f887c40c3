"""Each DRP stage and the composed program, under DummyLM."""

import threading

import dspy
import pytest
from dspy.utils import DummyLM

from drpkit.data.tasks import build_task
from drpkit.serving import (ContinuedAdapter, DocumentAdapter, InputsFirstJSONAdapter, TextAdapter, ThinkingChatAdapter,
                            ThinkingJSONAdapter, repetition_penalty, strip_thinking)
from drpkit.programs import DRP, STAGES, DRPConfig, Extract, Generate, StageFailure, Summarize, Usage, Validate
from drpkit.programs.checks import commentary_start, lead_in_end, review_problem
from drpkit.programs.formatting import format_item
from drpkit.signatures import (REVIEW_DOCUMENT, DifferenceFeature, ExtractDifferences, GenerateReview, SummarizeProfile,
                               ValidateDifferences)

FEATURES = [
    {"name": "Length", "definition": "How long the review is.", "description": "Far shorter than the others."},
    {"name": "Capitals", "definition": "Use of upper case.", "description": "Writes in lower case only."},
]
REVIEW = "short and blunt. does the job well enough for me. fine by me."
PREFERENCES = "Likes plain rock records; rates them middling; writes short, blunt, lower-case reviews."
FACTS = ["dislikes long albums", "writes in lower case", "likes rock albums"]
LEVELS = {"user_traits": "Terse and lower case, as in Review 1.", "item_plan": "Call it fine in two short lines.",
          "review": REVIEW}
ANSWERS = {
    "extract": {"reasoning": "compare", "differences": FEATURES},
    "validate": {"reasoning": "check", "keep": [1]},
    "summarize": {"summary": "Terse, lower-case writer."},
    "infer": {"preferences": PREFERENCES},
    "recap": {"summary": "A terse writer of short rock reviews."},
    "distill": {"facts": FACTS, "traits": ["a terse critic"]},
    "refine": {"traits": ["a terse, lower-case critic of rock albums"]},
    "generate": {"review": REVIEW},
    "reason": LEVELS,
    "crosscheck": {"inconsistencies": [], "review": REVIEW},
}


def stage_lms(n=50, **answers):
    """One DummyLM per stage, each answering the same thing every time (`answers` by stage: a list of its own)."""
    return {stage: DummyLM(answers.get(stage) or [ANSWERS[stage]] * n) for stage in STAGES}


def test_extract_returns_typed_features(tiny_data):
    task = build_task(tiny_data.rows["test"][0], tiny_data, num_retrieved=3, num_compared=1, m=4)
    comparison = task.comparisons[0]
    with dspy.context(lm=DummyLM([{"reasoning": "r", "differences": FEATURES}])):
        features = Extract()(comparison.item, comparison.user_review, [o for _, o in comparison.others], usage=Usage())
    assert [f.name for f in features] == ["Length", "Capitals"]
    assert all(isinstance(f, DifferenceFeature) for f in features)


def test_validate_keeps_only_the_numbered_features(tiny_data):
    task = build_task(tiny_data.rows["test"][0], tiny_data, num_retrieved=3, num_compared=1, m=4)
    c = task.comparisons[0]
    features = [DifferenceFeature(**f) for f in FEATURES]
    lm = DummyLM([{"reasoning": "r", "keep": [2]}])
    with dspy.context(lm=lm):
        kept = Validate()(c.item, c.user_review, [o for _, o in c.others], features, usage=Usage())
    assert [f.name for f in kept] == ["Capitals"]
    prompt = lm.history[0]["messages"][-1]["content"]
    assert "1. [Length]" in prompt and "2. [Capitals]" in prompt


def test_validate_out_of_range_is_retried_then_fails(tiny_data):
    task = build_task(tiny_data.rows["test"][0], tiny_data, num_retrieved=3, num_compared=1, m=4)
    c = task.comparisons[0]
    usage = Usage()
    with dspy.context(lm=DummyLM([{"reasoning": "r", "keep": [7]}] * 3)):
        with pytest.raises(StageFailure) as failure:
            Validate(attempts=3)(c.item, c.user_review, [], [DifferenceFeature(**FEATURES[0])], usage=usage)
    assert failure.value.stage == "validate"
    assert len(failure.value.problems) == 3 and "out of range" in failure.value.problems[0]
    assert usage.stages["validate"]["calls"] == 3


def test_unparseable_answer_is_retried(tiny_data):
    answers = [{"reasoning": "r"}, {"reasoning": "r"}, {"reasoning": "r", "differences": FEATURES}]
    task = build_task(tiny_data.rows["test"][0], tiny_data, num_retrieved=3, num_compared=1, m=4)
    c = task.comparisons[0]
    usage = Usage()
    with dspy.context(lm=DummyLM(answers), adapter=dspy.ChatAdapter(use_json_adapter_fallback=False)):
        features = Extract(attempts=3)(c.item, c.user_review, [], usage=usage)
    assert len(features) == 2
    assert usage.stages["extract"]["calls"] == 3


def test_generate_retries_an_echo_of_the_prompt(tiny_data):
    task = build_task(tiny_data.rows["test"][0], tiny_data, num_retrieved=3, num_compared=0, m=4)
    echo = "[[ ## past_reviews ## ]]\nReview 1 (of Album 0)"
    lm = DummyLM([{"review": echo}, {"review": REVIEW}])
    usage = Usage()
    with dspy.context(lm=lm):
        review = Generate()(task.item, (), "summary", 4.0, "ok", usage=usage, sources=[])
    assert review == REVIEW
    assert usage.stages["generate"]["calls"] == 2


def test_generate_retries_an_echo_of_its_instruction(tiny_data):
    """Seen with the 1.5B model: the review field filled with the signature's instruction, reworded."""
    task = build_task(tiny_data.rows["test"][0], tiny_data, num_retrieved=3, num_compared=0, m=4)
    generate = Generate()
    generate.predict.signature = generate.predict.signature.with_instructions(
        "Write the review that the current user would write for the item, in their own voice: match the length, "
        "tone, vocabulary and habits of their past reviews.")
    echo = ("The current user would write a review that the current user would write for the item, in their own "
            "voice: match the length, tone, vocabulary and habits of their past reviews.")
    usage = Usage()
    with dspy.context(lm=DummyLM([{"review": echo}, {"review": REVIEW}])):
        review = generate(task.item, (), "summary", 4.0, "ok", usage=usage, sources=[])
    assert review == REVIEW
    assert "copied verbatim from the prompt" in usage.retries[0]["problem"]


def test_length_hint_tells_generate_the_median_length_of_the_history(tiny_data):
    from drpkit.programs import METHODS

    task = build_task(tiny_data.rows["test"][0], tiny_data, num_retrieved=3, num_compared=1, m=4)
    lms = stage_lms()
    program = DRP(DRPConfig(selection="random", length_hint=True))
    program.set_stage_lms(lms)
    assert program(task=task).review == REVIEW
    prompt = lms["generate"].history[-1]["messages"][-1]["content"]
    counts = sorted(len(review.text.split()) for _, review in task.history)
    assert f"about {counts[1]} words (the median of the 3 past reviews shown)" in prompt
    plain = DRP(DRPConfig(selection="random"))
    assert "review_length" not in plain.generate.predict.signature.input_fields
    with pytest.raises(ValueError, match="non-p shows no past reviews"):
        METHODS["non-p"].apply(DRPConfig(length_hint=True), 8, 8)
    with pytest.raises(ValueError, match="rag shows no past reviews"):
        METHODS["rag"].apply(DRPConfig(length_hint=True), 0, 8)


def test_summarize_rejects_a_relisting_of_the_features_but_not_a_restatement():
    differences = "Album 1:\n1. [Length] Definition: How long. Difference: The user writes far shorter reviews."
    answers = [{"summary": differences}, {"summary": "The user writes far shorter reviews than others, in lower case."}]
    usage = Usage()
    with dspy.context(lm=DummyLM(answers)):
        summary = Summarize()("Review 1 ...", differences, usage=usage)
    assert summary.startswith("The user writes far shorter reviews")
    assert usage.retries == [{"stage": "summarize", "problem": usage.retries[0]["problem"]}]
    assert "re-lists" in usage.retries[0]["problem"]


def test_summarize_returns_text():
    with dspy.context(lm=DummyLM([{"summary": "  Terse writer.  "}])):
        assert Summarize()("Review 1 ...", "(no differences found)", usage=Usage()) == "Terse writer."


def test_review_problem_detects_empty_markers_and_copies():
    past = "the quick brown fox jumps over the lazy dog while the band plays a long slow blues song tonight"
    assert review_problem("", []) == "empty or too short"
    assert "field markers" in review_problem("Review Title:\nfoo bar baz", [])
    assert "verbatim" in review_problem("Intro: " + past, [past])
    assert review_problem("I liked it: " + past[:60] + ". But the rest of this record drags on far too long for me, "
                          "and the singer never finds the melody she is looking for.", [past]) is None
    assert review_problem("A warm, lovely record that I keep coming back to.", [past]) is None
    assert "100% of it copied" in review_problem("the lazy dog while the band plays", [past])
    assert review_problem("fine i guess. skip it.", ["fine i guess. skip track 7."]) is None  # a habit
    assert review_problem(past + " and " + past, []) == "repeats itself"
    for refusal in ("I'm sorry, but I can't assist with that request.", "I'm so sorry, but I can not assist with that.",
                    "I'm sorry, but as an AI language model, I cannot review any specific item.",
                    "As an AI language model, I don't have personal experiences, but here is a review.",
                    # two that passed as reviews on the 40 validation users
                    "Oh no, I'm sorry, but I can't assist with that.",
                    "As an artificial intelligence language model, I don't have personal opinions, feelings.",
                    # one that passed as a review when the answer was begun as a review page's entry
                    "I'm sorry, but I don't have enough information to give you a review of Bryter Layter."):
        assert review_problem(refusal, []) == "a refusal, not an answer"
    assert review_problem("I'm sorry, but this album is a bore and I can't stand it.", []) is None
    assert review_problem("I'm sorry, but I don't have the patience for a double album of filler.", []) is None
    assert review_problem("Unfortunately I can't help but skip the second side of this record.", []) is None


def test_a_template_filled_again_and_again_is_a_loop_though_no_twelve_words_repeat():
    loop = ("oh wow! this is one of the greatest funk albums ever made!!! " + " ".join(
        f"it's got some of the best {part} ever made!!!" for part in
        ("drumming", "vocals", "guitar playing", "piano playing", "bass playing", "horn playing", "percussion")))
    assert review_problem(loop, []).startswith("repeats itself (")
    refrain = ("You will hear EJ at his rockin' best here in songs such as \"Teacher I Need You\" and \"Crocodile "
               "Rock\". Don't Shoot Me brings out its melancholic side in \"Daniel\" and \"High Flying Bird\". The "
               "bonus tracks featured here are a delight, and the compositions featured here are some of the best "
               "musical and lyrical works of Elton John and Bernie Taupin. But don't just take my word for it: "
               "buy your copy of Don't Shoot Me today, and hear Elton John at his best.")
    assert review_problem(refrain, []) is None


def test_a_review_that_slips_into_a_script_the_prompt_never_uses_is_no_review():
    past = "Motörhead and Sigur Rós, both as loud as ever on this café recording."
    slip = "It reached number 2 on the UK chart and was certified gold by the British Columbia唱片 company."
    assert review_problem(slip, [past]) == "switches to another script (CJK)"
    assert review_problem("Not as loud as Motörhead, but the café sessions of Sigur Rós are lovely.", [past]) is None
    assert review_problem("The liner notes print 唱片 on the spine, which I liked.", [past, "唱片 (Chinese release)"]) is None
    assert review_problem("The liner notes print 唱片 on the spine, which I liked.", ["", "2014"]) is None  # no letters


def test_a_shop_assistants_reply_is_no_review_but_a_customers_sorry_or_glad_is():
    for reply in ("I'm sorry to hear that you didn't enjoy The Big Picture.", "Oh no, I'm sorry to hear that!",
                  "I'm so glad you enjoyed this album! Great choice.", "Thank you for your review of this item."):
        assert review_problem(reply, []) == "a reply to the customer, not their review"
    for review in ("I'm sorry, but this album is a bore from start to end.", "I am glad I bought this album.",
                   "So happy with this purchase, the sound is fine."):
        assert review_problem(review, []) is None


def test_a_comment_on_the_review_is_where_it_ends_but_a_reviewers_own_words_are_not():
    review = "Great album, I play it every week."
    for comment in ("This review matches the length, tone, vocabulary, and habits of the other reviews.",
                    "The reviewer expresses enthusiasm for the album, which aligns with the profile summary.",
                    "Overall, the review is positive and enthusiastic.", "The reviewer's tone is warm.",
                    # seen under a length floor, which keeps the model writing past its review
                    "Note: This review matches the style, tone, vocabulary, and habits of the previous reviews.",
                    "Note: This review is based on the information provided in the question."):
        assert commentary_start(f"{review}\n{comment}") == len(review)
    for own in ("This review is dedicated to my son.", "This review is of the original American recording.",
                "The author does a fine job on the early years.", "To the reviewer who hated it: listen again.",
                "Note: this is the remastered edition, not the original."):
        assert commentary_start(f"{review} {own}") is None


def test_a_heading_line_ends_the_review_but_a_chart_position_does_not():
    review = "Great album, I play it every week."
    for heading in ("#Personal Note#\n\nFor each individual item, I am providing detailed reviews.", "## Summary"):
        assert commentary_start(f"{review}\n\n{heading}") == len(review)
    assert commentary_start(f"{review}\n#1 on the charts for a month, and rightly.") is None


def test_generate_cuts_a_comment_on_its_review_and_records_the_cut(tiny_data):
    task = build_task(tiny_data.rows["test"][0], tiny_data, num_retrieved=3, num_compared=0, m=4)
    usage = Usage()
    comment = "This review matches the length, tone, vocabulary, and habits of the user."
    with dspy.context(lm=DummyLM([{"review": f"{REVIEW}\n\n{comment}"}])):
        review = Generate()(task.item, task.history, "s", 5.0, "ok", usage=usage, sources=[])
    assert review == REVIEW and usage.stages["generate"]["calls"] == 1  # nothing asked again
    assert usage.retries == [{"stage": "generate",
                              "problem": f"a comment on the review, cut off (not retried): {comment!r}"}]


def test_a_line_announcing_the_review_is_cut_but_a_review_opening_with_sure_is_not(tiny_data):
    task = build_task(tiny_data.rows["test"][0], tiny_data, num_retrieved=3, num_compared=0, m=4)
    for lead_in in ("Sure, here's the review text in your own voice:",
                    "Sure, I'd be happy to write your review for you. Let's dive into it."):
        usage = Usage()
        with dspy.context(lm=DummyLM([{"review": f"{lead_in}\n\n{REVIEW}"}])):
            review = Generate()(task.item, task.history, "s", 5.0, "ok", usage=usage, sources=[])
        assert review == REVIEW and usage.stages["generate"]["calls"] == 1  # nothing asked again
        assert usage.retries == [{"stage": "generate",
                                  "problem": f"a line announcing the review, cut off (not retried): {lead_in!r}"}]
    for own in ("Sure, Michael Jackson sold more! But this review is about a better song.",
                "Here's why this album matters: when I was twelve my review of it won a prize. It still does."):
        assert lead_in_end(own) is None


def test_drp_program_end_to_end_keeps_intermediates(tiny_data):
    task = build_task(tiny_data.rows["test"][0], tiny_data, num_retrieved=3, num_compared=2, m=4)
    program = DRP(DRPConfig(selection="random"))
    lms = stage_lms()
    program.set_stage_lms(lms)
    prediction = program(task=task)
    assert prediction.review == REVIEW
    assert prediction.summary == "Terse, lower-case writer."
    assert len(prediction.comparisons) == 2
    first = prediction.comparisons[0]
    assert len(first["representatives"]) == 4 and "u0" not in first["representatives"]
    assert [f["name"] for f in first["differences"]] == ["Length", "Capitals"]
    assert [f["name"] for f in first["validated"]] == ["Length"]
    assert {s: prediction.usage[s]["calls"] for s in prediction.usage} == {
        "extract": 2, "validate": 2, "summarize": 1, "generate": 1}
    # each stage ran on its own LM; the summary saw the validated feature only
    assert len(lms["extract"].history) == 2 and len(lms["generate"].history) == 1
    summarize_prompt = lms["summarize"].history[0]["messages"][-1]["content"]
    assert "[Length]" in summarize_prompt and "[Capitals]" not in summarize_prompt
    # the target review's text never reaches a prompt
    for lm in lms.values():
        for call in lm.history:
            assert task.reference not in str(call["messages"])


def test_ablations_are_configuration(tiny_data):
    task = build_task(tiny_data.rows["test"][0], tiny_data, num_retrieved=3, num_compared=2, m=4)
    program = DRP(DRPConfig(selection="random", validate=False, summarize=False, dimensions="fixed"))
    lms = stage_lms()
    program.set_stage_lms(lms)
    prediction = program(task=task)
    assert set(prediction.usage) == {"extract", "generate"}
    assert "Writing Style" in lms["extract"].history[0]["messages"][0]["content"]
    generate_prompt = lms["generate"].history[0]["messages"][-1]["content"]
    assert "[Capitals]" in generate_prompt  # unvalidated differences go straight to Generate
    assert prediction.summary.startswith("Album")


def test_content_dimensions_ask_extract_and_validate_about_what_the_user_discusses(tiny_data):
    task = build_task(tiny_data.rows["test"][0], tiny_data, num_retrieved=3, num_compared=1, m=4)
    program = DRP(DRPConfig(selection="random", dimensions="with-content"))
    lms = stage_lms()
    program.set_stage_lms(lms)
    program(task=task)
    extract_system, validate_system = (" ".join(lms[stage].history[0]["messages"][0]["content"].split())
                                       for stage in ("extract", "validate"))
    assert "which aspects of the item the user discusses" in extract_system
    assert "not in the facts about the item" not in extract_system
    assert "mere facts about this item that say nothing about the user" in validate_system


def test_extract_failure_is_recorded_and_the_sample_goes_on(tiny_data):
    task = build_task(tiny_data.rows["test"][0], tiny_data, num_retrieved=3, num_compared=1, m=4)
    program = DRP(DRPConfig(selection="random", attempts=2))
    program.set_stage_lms(stage_lms(extract=[{"reasoning": "r", "differences": []}] * 2))
    prediction = program(task=task)
    assert prediction.review == REVIEW
    assert prediction.failures[0]["stage"] == "extract"
    assert prediction.comparisons[0]["validated"] == []


def test_thinking_models_are_parsed():
    assert strip_thinking("<think>hmm</think>\nanswer") == "answer"
    assert strip_thinking("hmm, let me see</think>answer") == "answer"
    assert strip_thinking("plain answer") == "plain answer"
    completion = ("<think>The user is terse.</think>\n[[ ## reasoning ## ]]\nshort\n\n[[ ## differences ## ]]\n"
                  '[{"name": "Length", "definition": "d", "description": "shorter"}]\n\n[[ ## completed ## ]]')
    parsed = ThinkingChatAdapter().parse(dspy.ChainOfThought(ExtractDifferences).predict.signature, completion)
    assert parsed["differences"][0].name == "Length"


def test_program_runs_with_the_default_json_adapter(tiny_data):
    json_adapter = dspy.JSONAdapter()
    lms = {
        "extract": DummyLM([{"reasoning": "r", "differences": FEATURES}] * 2, adapter=json_adapter),
        "validate": DummyLM([{"reasoning": "r", "keep": [1, 2]}] * 2, adapter=json_adapter),
        "summarize": DummyLM([{"summary": "Terse."}], adapter=json_adapter),
        "generate": DummyLM([{"review": REVIEW}], adapter=json_adapter),
    }
    task = build_task(tiny_data.rows["test"][1], tiny_data, num_retrieved=3, num_compared=2, m=4)
    program = DRP(DRPConfig(selection="random"))
    program.set_stage_lms(lms)
    with dspy.context(adapter=ThinkingJSONAdapter()):
        prediction = program(task=task)
    assert prediction.review == REVIEW and prediction.failures == []
    assert [f["name"] for f in prediction.comparisons[1]["validated"]] == ["Length", "Capitals"]


def test_methods_are_settings_of_the_one_program(tiny_data):
    from drpkit.programs import METHODS

    calls = {}
    for name, method in METHODS.items():
        config, num_retrieved, num_compared = method.apply(DRPConfig(selection="random"), 3, 2)
        task = build_task(tiny_data.rows["test"][0], tiny_data, num_retrieved, num_compared, m=4, split="test",
                          neighbours=config.similar_users)
        program = DRP(config)
        lms = stage_lms()
        program.set_stage_lms(lms)
        prediction = program(task=task)
        assert prediction.review == REVIEW
        calls[name] = {stage: usage["calls"] for stage, usage in prediction.usage.items()}
        writer = lms["reason" if name == "rrp" else "generate"].history[0]["messages"]
        whole_prompt = "\n".join(message["content"] for message in writer)
        # an input the method lacks is not in the prompt at all, neither as a field nor as "(none)"
        assert ("past_reviews" in whole_prompt) == (name not in {"non-p", "popi"})
        assert ("profile_summary" in whole_prompt) == (name in {"intsum", "dpl", "drp", "popi", "llm-trsr", "p-db"})
        assert "(none)" not in whole_prompt
        assert ("Other customers' reviews (not like these)" in writer[-1]["content"]) == (name == "cicl")
        for lm in lms.values():  # the target review never reaches a prompt
            assert all(task.reference not in str(call["messages"]) for call in lm.history)
    assert calls == {
        "non-p": {"generate": 1},
        "rag": {"generate": 1},
        "intsum": {"summarize": 1, "generate": 1},
        "cicl": {"generate": 1},
        "dpl": {"extract": 2, "summarize": 1, "generate": 1},
        "drp": {"extract": 2, "validate": 2, "summarize": 1, "generate": 1},
        "popi": {"infer": 1, "generate": 1},
        "rrp": {"reason": 1, "crosscheck": 1},
        "llm-trsr": {"recap": 1, "generate": 1},
        "p-db": {"distill": 3, "refine": 1, "generate": 1},  # the user's and two similar users' personas
    }


def test_methods_have_the_stages_their_settings_add_and_keep_drps_prompts():
    from drpkit.programs import METHODS, stage_names

    added = {name: set(stage_names(method.apply(DRPConfig(), 8, 8)[0])) - {"extract", "validate", "summarize",
                                                                             "generate"}
             for name, method in METHODS.items()}
    assert added == {"non-p": set(), "rag": set(), "intsum": set(), "cicl": set(), "dpl": set(), "drp": set(),
                     "popi": {"infer"}, "rrp": {"reason", "crosscheck"}, "llm-trsr": {"recap"},
                     "p-db": {"distill", "refine"}}
    # a stage a method lacks is not part of its prompts: adding methods changed no other method's fingerprint
    popi = DRP(METHODS["popi"].apply(DRPConfig(), 8, 8)[0])
    assert set(popi.stages()) == {"extract", "validate", "summarize", "infer", "generate"}
    assert DRP(DRPConfig()).fingerprint() != popi.fingerprint()
    assert METHODS["popi"].apply(DRPConfig(), 8, 8)[1] == 0  # the summary alone, as POPI
    assert METHODS["popi"].apply(DRPConfig(popi_reviews=2), 8, 8)[1] == 2


def test_cicl_contrasts_the_users_reviews_with_the_representatives(tiny_data):
    task = build_task(tiny_data.rows["test"][0], tiny_data, num_retrieved=3, num_compared=2, m=4)
    program = DRP(DRPConfig(selection="random", contrast=True, validate=False, summarize=False))
    lms = stage_lms()
    program.set_stage_lms(lms)
    prediction = program(task=task)
    assert prediction.review == REVIEW and set(prediction.usage) == {"generate"}
    messages = lms["generate"].history[0]["messages"]
    assert "contrast_examples" in messages[0]["content"] and "profile_summary" not in messages[0]["content"]
    prompt = messages[-1]["content"]
    for comparison in prediction.comparisons:  # every representative's review is a negative example
        assert len(comparison["representatives"]) == 4 and comparison["differences"] == []
    assert prompt.count("Your review (write like this)") == 2 and prompt.count("Other user 4:") == 2
    assert "short and blunt album 0. fine." in prompt  # the user's own review of a compared item


def test_contrast_without_differences_is_enforced():
    with pytest.raises(ValueError, match="summarize=False"):
        DRPConfig(contrast=True)


def _shared_prefix(a: list[dict], b: list[dict]) -> str:
    """The text two requests' messages begin with, up to the first difference."""
    x, y = "\n".join(m["content"] for m in a), "\n".join(m["content"] for m in b)
    n = next((i for i, (p, q) in enumerate(zip(x, y)) if p != q), min(len(x), len(y)))
    return x[:n]


def test_inputs_first_lets_calls_that_share_inputs_share_a_prompt_prefix():
    adapter = InputsFirstJSONAdapter()
    reviews = {"item": "Album X. A record.", "user_review": "Rating: 2/5. meh.", "other_reviews": "Other user 1: wow"}
    extract = adapter.format(dspy.ChainOfThought(ExtractDifferences).predict.signature, [], reviews)
    validate = adapter.format(dspy.ChainOfThought(ValidateDifferences).predict.signature, [],
                              {**reviews, "differences": "1 feature"})
    shared = _shared_prefix(extract, validate)
    assert all(value in shared for value in reviews.values())  # the item and every review: computed once
    assert ExtractDifferences.instructions.split(".")[0] in extract[-1]["content"]  # the task follows the inputs
    history = "Review 1 (of Album Y): loud."
    summarize = adapter.format(SummarizeProfile, [], {"past_reviews": history, "differences": "(none)"})
    generate = adapter.format(GenerateReview, [], {"past_reviews": history, "item": "Album X.", "profile_summary": "p",
                                                   "rating": 4.0, "review_title": "t"})
    assert history in _shared_prefix(summarize, generate)
    # DSPy's own order shares no input: the task (in the system message) comes first
    task_first = ThinkingJSONAdapter()
    assert reviews["item"] not in _shared_prefix(
        task_first.format(dspy.ChainOfThought(ExtractDifferences).predict.signature, [], reviews),
        task_first.format(dspy.ChainOfThought(ValidateDifferences).predict.signature, [],
                          {**reviews, "differences": "1 feature"}))


class _BarrierLM(DummyLM):
    """Answers only when `parties` calls are waiting at once: it proves that they were sent together."""

    def __init__(self, answers, parties: int, **kwargs):
        super().__init__(answers, **kwargs)
        self.barrier = threading.Barrier(parties, timeout=10)

    def forward(self, *args, **kwargs):
        self.barrier.wait()
        return super().forward(*args, **kwargs)


def test_compared_items_are_extracted_and_validated_together(tiny_data):
    task = build_task(tiny_data.rows["test"][1], tiny_data, num_retrieved=3, num_compared=2, m=4)
    program = DRP(DRPConfig(selection="random"))
    program.set_stage_lms({
        "extract": _BarrierLM([{"reasoning": "r", "differences": FEATURES}] * 2, parties=2),
        "validate": _BarrierLM([{"reasoning": "r", "keep": [1]}] * 2, parties=2),
        "summarize": DummyLM([{"summary": "Terse."}]),
        "generate": DummyLM([{"review": REVIEW}]),
    })
    prediction = program(task=task)
    assert prediction.failures == [] and prediction.review == REVIEW
    assert [[f["name"] for f in c["validated"]] for c in prediction.comparisons] == [["Length"], ["Length"]]
    assert prediction.usage["extract"]["calls"] == 2 and prediction.usage["validate"]["calls"] == 2


def test_each_stage_asks_for_its_own_answer_budget(tiny_data):
    from drpkit.programs.drp import review_budget

    task = build_task(tiny_data.rows["test"][1], tiny_data, num_retrieved=3, num_compared=1, m=4)
    lms = {"extract": DummyLM([{"reasoning": "r", "differences": FEATURES}]),
           "validate": DummyLM([{"reasoning": "r", "keep": [1]}]),
           "summarize": DummyLM([{"summary": "Terse."}]),
           "generate": DummyLM([{"review": REVIEW}])}
    program = DRP(DRPConfig(selection="random"))
    program.set_stage_lms(lms)
    assert program(task=task).review == REVIEW
    asked = {stage: lm.history[-1]["kwargs"]["max_tokens"] for stage, lm in lms.items()}
    longest = max(len(review.text.split()) for _, review in task.history)
    assert review_budget(task.history) >= 2 * longest  # room for a review twice the user's longest, in tokens
    assert asked == {"extract": 1000, "validate": 512, "summarize": 512, "generate": review_budget(task.history)}  # LM caps 1000


# ----------------------------------------------------------------------------- plain text and demos


def text_lm(answers):
    """A DummyLM answering in plain text, as a model asked by the TextAdapter does."""
    return DummyLM(answers, adapter=TextAdapter(ThinkingJSONAdapter()))


def test_text_adapter_asks_for_and_takes_the_bare_text(tiny_data):
    task = build_task(tiny_data.rows["test"][0], tiny_data, num_retrieved=2, num_compared=0, m=4)
    lm = text_lm([{"review": "Review: " + REVIEW}])
    with dspy.context(lm=lm, adapter=TextAdapter(ThinkingJSONAdapter())):
        review = Generate()(task.item, task.history, "summary", 4.0, "ok", usage=Usage(), sources=[])
    assert review == REVIEW  # the label the model put first is dropped
    system, user = lm.history[0]["messages"]
    assert system["content"].startswith(GenerateReview.instructions)
    assert "[[ ##" not in system["content"] + user["content"]
    # every user turn ends with the request: bare data, the model took it for a message to answer
    request = "Write your review's text, in your own voice: the text only, no label, no heading."
    assert user["content"].endswith("\n\n" + request)
    assert user["content"].startswith("Past reviews:\nReview 1 (of ") and "\n\nRating: 4\n\n" in user["content"]


def test_text_adapter_leaves_reasoning_stages_to_its_fallback(tiny_data):
    task = build_task(tiny_data.rows["test"][0], tiny_data, num_retrieved=3, num_compared=1, m=4)
    c = task.comparisons[0]
    lm = DummyLM([{"reasoning": "r", "differences": FEATURES}], adapter=ThinkingJSONAdapter())
    with dspy.context(lm=lm, adapter=TextAdapter(ThinkingJSONAdapter())):
        features = Extract()(c.item, c.user_review, [o for _, o in c.others], usage=Usage())
    assert [f.name for f in features] == ["Length", "Capitals"]
    assert "JSON" in lm.history[0]["messages"][0]["content"]


def test_past_reviews_as_demos_are_earlier_turns_answered_with_the_users_reviews(tiny_data):
    task = build_task(tiny_data.rows["test"][1], tiny_data, num_retrieved=3, num_compared=0, m=4)
    lm = text_lm([{"review": REVIEW + " " + REVIEW.upper()}])
    with dspy.context(lm=lm, adapter=TextAdapter(ThinkingJSONAdapter())):
        Generate(past_reviews="demos")(task.item, task.history, "summary", 4.0, "ok", usage=Usage(), sources=[])
    messages = lm.history[0]["messages"]
    assert [m["role"] for m in messages] == ["system"] + ["user", "assistant"] * 3 + ["user"]
    # most relevant (first retrieved) last, nearest the request; each answer the user's own review, bare
    assert [m["content"] for m in messages[2:7:2]] == [review.text for _, review in reversed(task.history)]
    first_item, first_review = task.history[-1]
    assert messages[1]["content"] == (f"Item: {format_item(first_item)}\n\nRating: {first_review.rating:g}\n\n"
                                      f"Review title: {first_review.title}\n\nWrite your review's text, in your own "
                                      "voice: the text only, no label, no heading.")
    assert "Past reviews" not in messages[0]["content"] + messages[-1]["content"]
    assert "Profile summary: summary" in messages[-1]["content"]


def test_past_reviews_as_a_document_leave_the_model_the_target_entry_to_continue(tiny_data):
    task = build_task(tiny_data.rows["test"][1], tiny_data, num_retrieved=3, num_compared=0, m=4)
    lm = text_lm([{"review": " " + REVIEW + " I would play it again on a long drive."}])
    lm.kwargs["extra_body"] = {"repetition_detection": {"min_count": 3}}
    with dspy.context(lm=lm, adapter=ThinkingJSONAdapter()):  # whatever the run's adapter
        review = Generate(past_reviews="document")(task.item, task.history, "summary", 4.0, "ok", usage=Usage(),
                                                    sources=[])
    assert review == REVIEW + " I would play it again on a long drive."
    system, document = lm.history[0]["messages"]
    assert system["role"] == "system" and "You are a customer" in system["content"]
    assert document["role"] == "assistant"  # the model's own text, continued: no turn asks it anything
    entries = document["content"].split("\n\n")
    assert entries[:2] == [REVIEW_DOCUMENT, "Profile summary: summary"]
    # the past reviews, most relevant last, each a whole entry; the target's entry open after its label
    assert [entry.rsplit("Review: ", 1)[-1] for entry in entries[2:-1]] == [r.text for _, r in reversed(task.history)]
    assert entries[-1] == f"Item: {format_item(task.item)}\nRating: 4\nReview title: ok\nReview:"
    kwargs = lm.history[0]["kwargs"]
    assert kwargs["stop"] == ["\nItem:"]  # the next entry is not the review's
    assert kwargs["extra_body"] == {"repetition_detection": {"min_count": 3}, "continue_final_message": True,
                                    "add_generation_prompt": False}


def test_a_profile_in_the_entry_sits_just_above_the_open_review_and_not_under_the_heading(tiny_data):
    task = build_task(tiny_data.rows["test"][1], tiny_data, num_retrieved=3, num_compared=0, m=4)
    lm = text_lm([{"review": " " + REVIEW}])
    with dspy.context(lm=lm, adapter=ThinkingJSONAdapter()):
        Generate(past_reviews="document", profile_in_entry=True)(task.item, task.history, "summary", 4.0, "ok",
                                                                  usage=Usage(), sources=[])
    entries = lm.history[0]["messages"][-1]["content"].split("\n\n")
    assert entries[1].startswith("Item: ")  # the first past review follows the heading at once
    assert "Profile summary" not in "\n\n".join(entries[:-1])
    assert entries[-1] == (f"Item: {format_item(task.item)}\nRating: 4\nReview title: ok\n"
                           "Profile summary: summary\nReview:")


def test_a_profile_in_the_entry_needs_the_document():
    with pytest.raises(ValueError, match="past_reviews 'document'"):
        DRPConfig(profile_in_entry=True)


def test_an_opened_answer_asks_in_a_chat_turn_and_leaves_the_model_a_review_entry_to_continue(tiny_data):
    task = build_task(tiny_data.rows["test"][1], tiny_data, num_retrieved=3, num_compared=0, m=4)
    lm = text_lm([{"review": " " + REVIEW}])
    with dspy.context(lm=lm, adapter=ThinkingJSONAdapter()):  # whatever the run's adapter
        review = Generate(open_answer=True)(task.item, [], None, 2.0, "Val-Hala", usage=Usage(), sources=[])
    assert review == REVIEW
    system, request, answer = lm.history[0]["messages"]
    assert [system["role"], request["role"]] == ["system", "user"]
    assert request["content"].endswith("Write your review's text, in your own voice: the text only, no label, "
                                       "no heading.")
    assert answer == {"role": "assistant", "content": "Rating: 2\nReview title: Val-Hala\nReview:"}
    assert lm.history[0]["kwargs"]["extra_body"] == ContinuedAdapter.CONTINUE


def test_an_answer_begun_twice_is_refused():
    with pytest.raises(ValueError, match="begins it already"):
        DRPConfig(open_answer=True, past_reviews="document")


def test_an_answer_that_repeats_the_open_document_is_parsed_to_what_follows_it():
    # llama.cpp's server answers a continued document with the document and what it wrote on; vLLM's, with the latter
    adapter = DocumentAdapter(REVIEW_DOCUMENT, ("item", "rating", "review_title"), fallback=dspy.JSONAdapter())
    inputs = {"past_reviews": "", "item": "Abbey Road", "profile_summary": "s", "rating": 4.0, "review_title": "ok"}
    document = adapter.format(GenerateReview, [], inputs)[-1]["content"]
    assert document.endswith("Review:")
    assert adapter.parse(GenerateReview, document + " " + REVIEW) == {"review": REVIEW}
    assert adapter.parse(GenerateReview, " " + REVIEW) == {"review": REVIEW}


def test_the_repetition_penalty_goes_to_generate_only(tiny_data):
    task = build_task(tiny_data.rows["test"][1], tiny_data, num_retrieved=3, num_compared=0, m=4)
    lm = DummyLM([{"review": REVIEW}], adapter=dspy.ChatAdapter())
    program = DRP(DRPConfig(selection="random", summarize=False, repetition_penalty=1.15))
    program.set_stage_lms(dict.fromkeys(("extract", "validate", "summarize", "generate"), lm))
    assert program(task=task).review == REVIEW
    assert [call["kwargs"].get("extra_body") for call in lm.history] == [repetition_penalty(1.15)]


def test_a_review_far_shorter_than_the_users_is_retried_and_kept_if_nothing_better_comes(tiny_data):
    wordy = max(tiny_data.rows["test"], key=lambda row: min(len(r.text.split()) for r in row.profile))
    task = build_task(wordy, tiny_data, num_retrieved=3, num_compared=0, m=4)
    usage = Usage()
    with dspy.context(lm=DummyLM([{"review": "LOVED it!!! wow"}, {"review": REVIEW + " I would play it again on a long drive."}])):
        review = Generate()(task.item, task.history, "s", 5.0, "ok", usage=usage, sources=[])
    assert review.startswith(REVIEW) and usage.stages["generate"]["calls"] == 2
    assert "far shorter than any of the user's reviews" in usage.retries[0]["problem"]

    usage = Usage()
    with dspy.context(lm=DummyLM([{"review": f"LOVED it!!! wow {i}"} for i in range(4)])):
        review = Generate(attempts=4)(task.item, task.history, "s", 5.0, "ok", usage=usage, sources=[])
    assert review == "LOVED it!!! wow 3" and usage.stages["generate"]["calls"] == 4  # short, but no failure


def test_style_is_measured_in_code_from_the_users_reviews_against_the_representatives():
    from drpkit.programs.style import Style, describe_style

    user = Style.measure(["I LOVE it! I really do. Best album ever!", "My favourite band! WOW. I play it daily!"])
    assert user.words == 8.5 and user.exclamations > 10 and user.first_person > 10 and user.capitals > 5
    others = Style.measure(["A long and careful review " * 8, "Another considered review of the record " * 6])
    text = describe_style(user, others)
    assert text.startswith("reviews of about 8 words (shorter than other reviewers of the same items: about ")
    assert "exclamation marks: often" in text and "words in all capitals: often" in text
    assert describe_style(user).startswith("reviews of about 8 words; sentences of about 3 words;")
    assert Style.measure(["", "!!!"]) is None


def test_style_hint_reaches_generate_from_history_and_representatives_only(tiny_data):
    task = build_task(tiny_data.rows["test"][1], tiny_data, num_retrieved=3, num_compared=1, m=4)
    lms = stage_lms()
    program = DRP(DRPConfig(selection="random", style_hint=True))
    program.set_stage_lms(lms)
    program(task=task)
    prompt = lms["generate"].history[-1]["messages"][-1]["content"]
    assert "[[ ## writing_style ## ]]\nreviews of about 13 words (like other reviewers of the same items: about " in prompt
    assert "exclamation marks: often" in prompt
    from drpkit.programs import METHODS
    with pytest.raises(ValueError, match=r"non-p shows no past reviews .*\(style_hint\)"):
        METHODS["non-p"].apply(DRPConfig(style_hint=True), 8, 8)


def test_length_floor_asks_the_server_for_min_tokens_from_the_history_beside_the_lms_extras(tiny_data):
    from drpkit.programs.drp import review_floor

    task = build_task(tiny_data.rows["test"][1], tiny_data, num_retrieved=3, num_compared=0, m=4)
    lm = DummyLM([{"review": REVIEW}] * 2, adapter=dspy.ChatAdapter())
    lm.kwargs["extra_body"] = {"repetition_detection": {"min_count": 3}}
    program = DRP(DRPConfig(selection="random", summarize=False, length_floor=0.75))
    program.set_stage_lms(dict.fromkeys(("extract", "validate", "summarize", "generate"), lm))
    assert program(task=task).review == REVIEW
    extra_body = lm.history[-1]["kwargs"]["extra_body"]
    median = sorted(len(review.text.split()) for _, review in task.history)[1]
    assert extra_body == {"repetition_detection": {"min_count": 3}, "min_tokens": review_floor(task, 0.75)}
    assert 0.5 * median <= review_floor(task, 0.75) <= median * 1.4  # about 3/4 of the median past review, in tokens

    program = DRP(DRPConfig(selection="random", summarize=False))  # off by default: the paper's setting
    program.set_stage_lms(dict.fromkeys(("extract", "validate", "summarize", "generate"), lm))
    program(task=task)
    assert "min_tokens" not in lm.history[-1]["kwargs"].get("extra_body", {})
    from drpkit.programs import METHODS
    with pytest.raises(ValueError, match=r"\(length_floor\)"):
        METHODS["non-p"].apply(DRPConfig(length_floor=1.0), 8, 8)


def test_after_a_loop_under_the_length_floor_the_retries_go_without_it_but_not_after_a_refusal(tiny_data):
    task = build_task(tiny_data.rows["test"][1], tiny_data, num_retrieved=3, num_compared=0, m=4)
    refusal = "I'm sorry, but I can't assist with that request."
    loop = " ".join(["the band plays the same song again and again and again"] * 3)
    lm = DummyLM([{"review": refusal}, {"review": loop}, {"review": REVIEW}], adapter=dspy.ChatAdapter())
    usage = Usage()
    with dspy.context(lm=lm):
        review = Generate()(task.item, task.history, "summary", 4.0, "ok", usage=usage, sources=[], min_tokens=40)
    assert review == REVIEW
    floors = [call["kwargs"].get("extra_body", {}).get("min_tokens") for call in lm.history]
    assert floors == [40, 40, None]  # a refusal is no work of the floor; a loop may be


def test_end_bias_lowers_the_end_token_until_an_answer_loops(tiny_data, vllm_stand_in):
    from fake_server import END_TOKEN

    task = build_task(tiny_data.rows["test"][1], tiny_data, num_retrieved=3, num_compared=0, m=4)
    loop = " ".join(["the band plays the same song again and again and again"] * 3)
    lm = DummyLM([{"review": loop}, {"review": REVIEW}], adapter=dspy.ChatAdapter())
    lm.kwargs["api_base"] = vllm_stand_in
    program = DRP(DRPConfig(selection="random", summarize=False, end_bias=-4.0))
    program.set_stage_lms(dict.fromkeys(("extract", "validate", "summarize", "generate"), lm))
    assert program(task=task).review == REVIEW
    first, retry = (call["kwargs"].get("extra_body", {}) for call in lm.history)
    assert first == {"logit_bias": {str(END_TOKEN): -4.0}} and retry == {}


def words(n: int, word: str = "good") -> str:
    """A review of `n` distinct words (no loop for the checks to find)."""
    return " ".join(f"{word}{i}" for i in range(n)) + "."


def test_candidates_keep_the_usable_review_nearest_the_median_past_length(tiny_data):
    task = build_task(tiny_data.rows["test"][2], tiny_data, num_retrieved=3, num_compared=0, m=4)
    median = sorted(len(review.text.split()) for _, review in task.history)[1]
    loop = " ".join(["the band plays the same song again and again and again"] * 3)
    near, far = words(median + 1, "near"), words(4 * median, "far")
    lm = DummyLM([{"review": words(median // 2 + 1, "greedy")}, {"review": loop}, {"review": far},
                  {"review": near}], adapter=dspy.ChatAdapter())
    program = DRP(DRPConfig(selection="random", summarize=False, review_candidates=4))
    program.set_stage_lms(dict.fromkeys(("extract", "validate", "summarize", "generate"), lm))
    assert program(task=task).review == near.strip()  # the loop is long too, but no review
    greedy, sampled = (call["kwargs"] for call in lm.history)
    assert "n" not in greedy and sampled["n"] == 3 and sampled["temperature"] == 0.8


def test_more_candidates_repeat_the_first_sampled_request_and_ask_the_rest_apart(tiny_data):
    task = build_task(tiny_data.rows["test"][2], tiny_data, num_retrieved=3, num_compared=0, m=4)
    requests = {}
    for candidates in (4, 8):
        lm = DummyLM([{"review": words(15 + i, "review")} for i in range(candidates)], adapter=dspy.ChatAdapter())
        with dspy.context(lm=lm):
            Generate(review_candidates=candidates)(task.item, task.history, None, 4.0, "ok", usage=Usage(), sources=[])
        requests[candidates] = [call["kwargs"] for call in lm.history]
    assert requests[8][:2] == requests[4]  # what a run with 4 asked, a run with 8 asks alike: DSPy's cache answers
    later = requests[8][2:]
    assert [r["n"] for r in later] == [3, 1] and len({r["rollout_id"] for r in later}) == 2


def test_with_no_usable_candidate_the_greedy_answer_is_retried_as_any_answer(tiny_data):
    task = build_task(tiny_data.rows["test"][2], tiny_data, num_retrieved=3, num_compared=0, m=4)
    refusal = "I'm sorry, but I can't assist with that request."
    lm = DummyLM([{"review": refusal}, {"review": refusal}, {"review": words(60)}, {"review": REVIEW}],
                 adapter=dspy.ChatAdapter())
    usage = Usage()
    with dspy.context(lm=lm):
        review = Generate(review_candidates=2)(task.item, task.history, None, 4.0, "ok", usage=usage, sources=[])
    assert review == REVIEW  # of the retry's two candidates, the one nearer the median past review (15 words)
    assert [r["problem"][:9] for r in usage.retries] == ["a refusal"]
    assert usage.stages["generate"]["calls"] == 4


def test_an_empty_sampled_candidate_leaves_the_greedy_review(tiny_data):
    task = build_task(tiny_data.rows["test"][2], tiny_data, num_retrieved=3, num_compared=0, m=4)
    adapter = TextAdapter(ThinkingJSONAdapter())
    lm = DummyLM([{"review": REVIEW}, {"review": words(20)}, {"review": ""}], adapter=adapter)
    with dspy.context(lm=lm, adapter=adapter):
        review = Generate(review_candidates=3)(task.item, task.history, None, 4.0, "ok", usage=Usage(), sources=[])
    assert review == REVIEW and len(lm.history) == 2  # DSPy cannot parse the empty one: no retry, the first stands


def test_the_similarity_pick_keeps_the_candidate_most_like_the_past_reviews_and_the_row_records_each(tiny_data):
    task = build_task(tiny_data.rows["test"][2], tiny_data, num_retrieved=3, num_compared=0, m=4)
    own = "The production of album 3 is clean: a wide stereo image, a tight low end and restrained compression again."
    lm = DummyLM([{"review": words(15, "greedy")}, {"review": own}, {"review": words(14, "other")}],
                 adapter=dspy.ChatAdapter())
    program = DRP(DRPConfig(selection="random", summarize=False, review_candidates=3, review_pick="similarity"))
    program.set_stage_lms(dict.fromkeys(("extract", "validate", "summarize", "generate"), lm))
    prediction = program(task=task)
    assert prediction.review == own  # 19 words, farther from the median (15) than the greedy one, in the user's words
    assert [(c["review"], c["usable"], c["picked"]) for c in prediction.candidates] == [
        (words(15, "greedy"), True, False), (own, True, True), (words(14, "other"), True, False)]
    assert prediction.candidates[1]["score"] > max(prediction.candidates[0]["score"], prediction.candidates[2]["score"])


def test_a_pick_without_candidates_is_refused():
    with pytest.raises(ValueError, match="set review_candidates above 1"):
        DRPConfig(review_pick="similarity")


def test_a_user_without_past_reviews_gets_the_greedy_review_alone(tiny_data):
    task = build_task(tiny_data.rows["test"][2], tiny_data, num_retrieved=0, num_compared=0, m=4)
    lm = DummyLM([{"review": REVIEW}, {"review": words(20)}], adapter=dspy.ChatAdapter())
    program = DRP(DRPConfig(selection="random", summarize=False, review_candidates=3))
    program.set_stage_lms(dict.fromkeys(("extract", "validate", "summarize", "generate"), lm))
    assert program(task=task).review == REVIEW and len(lm.history) == 1  # no length to pick by: no candidates


def test_candidates_need_past_reviews_to_measure_a_length():
    from drpkit.programs import METHODS

    with pytest.raises(ValueError, match=r"\(review_candidates\)"):
        METHODS["non-p"].apply(DRPConfig(review_candidates=4), 8, 8)
    assert METHODS["rag"].apply(DRPConfig(review_candidates=4), 8, 8)[0].review_candidates == 4
    with pytest.raises(ValueError, match="at least 1"):
        DRPConfig(review_candidates=0)


def test_the_fingerprint_covers_the_prompts_as_the_adapter_writes_them():
    class Terse(TextAdapter):
        def format_field_structure(self, signature):
            return "Go."

    program = DRP(DRPConfig())
    text = program.fingerprint(TextAdapter(ThinkingJSONAdapter()))
    assert text == DRP(DRPConfig()).fingerprint(TextAdapter(ThinkingJSONAdapter()))
    assert text != program.fingerprint(Terse(ThinkingJSONAdapter())) != program.fingerprint()
    assert program.fingerprint(ThinkingJSONAdapter()) != program.fingerprint(ThinkingChatAdapter())


# ----------------------------------------------------------------------------- per-user summaries, RRP


def method_program(name, lms=None, **config):
    """The program of method `name` (random representatives), with `lms` (default: `stage_lms()`)."""
    from drpkit.programs import METHODS

    config, num_retrieved, num_compared = METHODS[name].apply(DRPConfig(selection="random", **config), 3, 2)
    program = DRP(config)
    lms = lms or stage_lms()
    program.set_stage_lms(lms)
    return program, lms, num_retrieved, num_compared


def train_tasks(data, user, num_retrieved, num_compared, neighbours=0):
    return [build_task(row, data, num_retrieved, num_compared, m=4, split="train", neighbours=neighbours)
            for row in data.rows["train"] if row.user_id == user]


def prompts(lm):
    return ["\n".join(m["content"] for m in call["messages"]) for call in lm.history]


def test_popi_infers_the_preferences_once_per_user_and_generate_sees_them_instead_of_the_history(train_data):
    program, lms, num_retrieved, num_compared = method_program("popi")
    first, second = train_tasks(train_data, "u0", num_retrieved, num_compared)
    predictions = [program(task=task) for task in (first, second)]
    assert [p.review for p in predictions] == [REVIEW, REVIEW]
    assert [p.usage.get("infer", {}).get("calls", 0) for p in predictions] == [1, 0]  # charged to the first
    assert len(lms["infer"].history) == 1 and len(lms["generate"].history) == 2
    assert [[(r["kind"], r["made"]) for r in p.user_profiles] for p in predictions] == [[("popi", True)],
                                                                                        [("popi", False)]]
    (inferred,) = prompts(lms["infer"])
    assert "album 1" in inferred and "album 2" not in inferred  # the first target, in the second's profile: never
    for prompt in prompts(lms["generate"]):
        assert PREFERENCES in prompt and "past_reviews" not in prompt
    assert all(p.summary == PREFERENCES for p in predictions)


def test_a_per_user_summary_serves_every_generator_but_not_another_summarizer_prompt(train_data):
    program, lms, num_retrieved, num_compared = method_program("popi")
    task, _ = train_tasks(train_data, "u1", num_retrieved, num_compared)
    program(task=task)
    other_generator = program.deepcopy()  # as an optimizer's candidate: the copies share the per-user summaries
    other_generator.set_stage_lms(lms)
    other_generator.generate.predict.signature = other_generator.generate.predict.signature.with_instructions(
        "Write the review.")
    assert other_generator(task=task).usage.get("infer") is None and len(lms["infer"].history) == 1
    other_summarizer = program.deepcopy()
    other_summarizer.set_stage_lms(lms)
    other_summarizer.infer.predict.signature = other_summarizer.infer.predict.signature.with_instructions(
        "Summarize the user's taste.")
    assert other_summarizer(task=task).usage["infer"]["calls"] == 1 and len(lms["infer"].history) == 2


def test_popi_reviews_shows_a_few_retrieved_reviews_beside_the_summary(train_data):
    program, lms, num_retrieved, num_compared = method_program("popi", popi_reviews=1)
    assert num_retrieved == 1
    task, _ = train_tasks(train_data, "u0", num_retrieved, num_compared)
    program(task=task)
    (prompt,) = prompts(lms["generate"])
    assert PREFERENCES in prompt and prompt.count("Review 1 (of ") == 1 and "Review 2 (of " not in prompt


def test_popi_picks_its_candidates_against_the_reviews_its_summary_read_without_showing_them(train_data):
    own = "The production of album 2 is clean again: a wide stereo image, a tight low end, restrained compression."
    answers = [{"review": words(15, "greedy")}, {"review": own}, {"review": words(14, "other")}]
    program, lms, num_retrieved, num_compared = method_program(
        "popi", lms=stage_lms(generate=answers), review_candidates=3, review_pick="similarity")
    task, _ = train_tasks(train_data, "u2", num_retrieved, num_compared)
    assert num_retrieved == 0 and not task.history
    assert program(task=task).review == own
    assert all("clean: wide stereo image" not in prompt for prompt in prompts(lms["generate"]))


def test_popis_answer_far_shorter_than_the_reviews_its_summary_read_is_retried(train_data):
    answers = [{"review": words(4, "fine")}, {"review": REVIEW}]
    program, lms, num_retrieved, num_compared = method_program("popi", lms=stage_lms(generate=answers))
    task, _ = train_tasks(train_data, "u2", num_retrieved, num_compared)
    prediction = program(task=task)
    assert prediction.review == REVIEW and "far shorter" in prediction.retries[0]["problem"]


def test_a_failed_per_user_summary_fails_each_target_of_the_user_without_a_second_try(train_data):
    empty = [{"preferences": ""}] * 2
    program, lms, num_retrieved, num_compared = method_program("popi", lms=stage_lms(infer=empty), attempts=2)
    predictions = [program(task=task) for task in train_tasks(train_data, "u0", num_retrieved, num_compared)]
    assert [p.review for p in predictions] == [None, None] and len(lms["infer"].history) == 2
    assert [p.failures[-1]["stage"] for p in predictions] == ["infer", "infer"]
    assert "empty preferences" in predictions[1].failures[-1]["problems"][0]


def test_llm_trsr_summarizes_the_history_recurrently_chunk_by_chunk(tiny_data):
    answers = [{"summary": "After the first chunk: terse."}, {"summary": "After the second chunk: terse, lower case."}]
    program, lms, num_retrieved, num_compared = method_program("llm-trsr", lms=stage_lms(recap=answers), chunk_size=2)
    task = build_task(tiny_data.rows["test"][0], tiny_data, num_retrieved, num_compared, m=4, split="test")
    prediction = program(task=task)
    first, second = prompts(lms["recap"])
    assert "(none yet)" in first and "album 0" in first and "album 1" in first and "album 2" not in first
    assert "After the first chunk: terse." in second and "album 2" in second and "album 0" not in second
    (generate,) = prompts(lms["generate"])
    assert "After the second chunk: terse, lower case." in generate and "[[ ## past_reviews ## ]]" in generate
    assert prediction.summary == "After the second chunk: terse, lower case."
    assert prediction.usage["recap"]["calls"] == 2


def test_pdb_refines_the_persona_with_similar_users_and_retrieves_its_facts_for_the_target(tiny_data):
    neighbour = [{"facts": ["likes jazz"], "traits": ["a careful listener"]}] * 2
    distill = [{"facts": FACTS, "traits": ["a terse critic"]}, *neighbour]
    program, lms, num_retrieved, num_compared = method_program("p-db", lms=stage_lms(distill=distill), persona_facts=1)
    row = tiny_data.rows["test"][0]
    task = build_task(row, tiny_data, num_retrieved, num_compared, m=4, split="test", neighbours=2)
    prediction = program(task=task)
    assert [n.user_id for n in task.neighbours] == ["u1", "u2"] and prediction.usage["distill"]["calls"] == 3
    (refine,) = prompts(lms["refine"])
    assert "a terse critic" in refine and "dislikes long albums" in refine and "Similar user 2:" in refine
    assert "a careful listener" in refine
    (generate,) = prompts(lms["generate"])
    # the refined traits, and of the facts only the one about rock, which the target's query names
    assert "a terse, lower-case critic of rock albums" in generate and "likes rock albums" in generate
    assert "dislikes long albums" not in generate
    kinds = [(r["kind"], r["user_id"]) for r in prediction.user_profiles]
    assert kinds == [("persona", "u0"), ("persona", "u1"), ("persona", "u2"), ("p-db", "u0")]
    # a similar user's persona is theirs too: their own p-db reuses it
    task1 = build_task(tiny_data.rows["test"][1], tiny_data, num_retrieved, num_compared, m=4, split="test",
                       neighbours=2)
    assert [n.user_id for n in task1.neighbours] == ["u0", "u2"]
    assert program(task=task1).usage.get("distill") is None and len(lms["refine"].history) == 2


def test_summary_scope_user_summarizes_once_for_all_targets_of_a_user(train_data):
    program, lms, num_retrieved, num_compared = method_program("drp", summary_scope="user")
    tasks = train_tasks(train_data, "u2", num_retrieved, num_compared)
    predictions = [program(task=task) for task in tasks]
    assert [{s: u["calls"] for s, u in p.usage.items()} for p in predictions] == [
        {"extract": 2, "validate": 2, "summarize": 1, "generate": 1}, {"generate": 1}]
    assert predictions[0].comparisons == predictions[1].comparisons and len(predictions[1].comparisons) == 2
    (summarize,) = prompts(lms["summarize"])
    assert "album 2" not in summarize and "album 3" not in summarize  # neither target
    per_target, lms2, *_ = method_program("drp")
    for task in tasks:
        per_target(task=task)
    assert len(lms2["summarize"].history) == 2 and len(lms2["extract"].history) == 4
    with pytest.raises(ValueError, match="summarize=True"):
        DRPConfig(summary_scope="user", summarize=False)


def test_rrp_reasons_through_the_template_then_cross_checks_the_draft(tiny_data):
    revised = REVIEW + " the mix is flat, as always with this label."
    crosscheck = [{"inconsistencies": ["too polite for this user"], "review": revised}]
    program, lms, num_retrieved, num_compared = method_program("rrp", lms=stage_lms(crosscheck=crosscheck))
    task = build_task(tiny_data.rows["test"][0], tiny_data, num_retrieved, num_compared, m=4)
    prediction = program(task=task)
    assert prediction.review == revised
    assert prediction.reasoning == {"user_traits": LEVELS["user_traits"], "item_plan": LEVELS["item_plan"],
                                    "draft": REVIEW, "inconsistencies": ["too polite for this user"]}
    (reason,) = lms["reason"].history
    outputs = reason["messages"][0]["content"]
    assert outputs.index("user_traits") < outputs.index("item_plan") < outputs.index("`review`")  # levels in order
    (check,) = prompts(lms["crosscheck"])
    assert REVIEW in check and LEVELS["user_traits"] in check and "Review 1 (of " in check
    assert set(prediction.usage) == {"reason", "crosscheck"}


@pytest.mark.parametrize("answer, problem", [
    (LEVELS | {"item_plan": ""}, "skips a level of the template: item plan is empty"),
    (LEVELS | {"user_traits": "   "}, "skips a level of the template: user traits is empty"),
    (LEVELS | {"item_plan": REVIEW}, "skips a level of the template: the plan is the review itself"),
])
def test_rrp_retries_an_answer_whose_reasoning_skips_a_level(tiny_data, answer, problem):
    program, lms, num_retrieved, num_compared = method_program("rrp", lms=stage_lms(reason=[answer, LEVELS]))
    task = build_task(tiny_data.rows["test"][0], tiny_data, num_retrieved, num_compared, m=4)
    prediction = program(task=task)
    assert prediction.review == REVIEW and prediction.usage["reason"]["calls"] == 2
    assert prediction.retries[0]["stage"] == "reason" and prediction.retries[0]["problem"].startswith(problem)


@pytest.mark.parametrize("traits, problem", [
    ("Terse and lower case.", "the traits cite no past review"),
    ("Review 4, Review 3, Review 2 and 1", "the traits only list past reviews"),
])
def test_rrp_retries_traits_not_drawn_from_the_retrieved_reviews_but_keeps_them_if_nothing_better_comes(
        tiny_data, traits, problem):
    uncited = LEVELS | {"user_traits": traits}
    program, lms, num_retrieved, num_compared = method_program("rrp", lms=stage_lms(reason=[uncited] * 4))
    task = build_task(tiny_data.rows["test"][0], tiny_data, num_retrieved, num_compared, m=4)
    prediction = program(task=task)
    assert prediction.review == REVIEW and prediction.usage["reason"]["calls"] == 4
    assert all(r["problem"].startswith(problem) for r in prediction.retries)


def test_rrp_keeps_the_draft_when_the_cross_check_gives_no_usable_answer(tiny_data):
    echo = [{"inconsistencies": [], "review": "[[ ## draft ## ]]"}] * 4
    program, lms, num_retrieved, num_compared = method_program("rrp", lms=stage_lms(crosscheck=echo))
    task = build_task(tiny_data.rows["test"][0], tiny_data, num_retrieved, num_compared, m=4)
    prediction = program(task=task)
    assert prediction.review == REVIEW and prediction.failures[-1]["stage"] == "crosscheck"
    assert "inconsistencies" not in prediction.reasoning


class _Thinking(dspy.JSONAdapter):
    """Formats DummyLM's answers as an R1-style model without a reasoning parser writes them."""

    def format_field_with_value(self, fields_with_values, role="user"):
        return "<think>Skip the plan? {\"review\": \"ok\"}</think>\n" + super().format_field_with_value(
            fields_with_values, role)


def test_rrp_runs_with_a_think_model_on_its_own_stage_lm(tiny_data):
    lms = stage_lms()
    lms["reason"] = DummyLM([LEVELS | {"item_plan": ""}, LEVELS], adapter=_Thinking())
    lms["crosscheck"] = DummyLM([ANSWERS["crosscheck"]], adapter=dspy.JSONAdapter())
    program, lms, num_retrieved, num_compared = method_program("rrp", lms=lms)
    task = build_task(tiny_data.rows["test"][0], tiny_data, num_retrieved, num_compared, m=4)
    with dspy.context(adapter=TextAdapter(InputsFirstJSONAdapter())):  # the cpu profile's; DSPy's own fails on it
        prediction = program(task=task)
    assert prediction.review == REVIEW and prediction.failures == []
    assert prediction.reasoning["item_plan"] == LEVELS["item_plan"]
    assert "item plan is empty" in prediction.retries[0]["problem"]  # the thinking drifted: the level is retried
    assert "<think>" not in str(prediction.reasoning)


def test_rrp_takes_no_hints_its_template_has_no_place_for():
    with pytest.raises(ValueError, match="length_hint"):
        DRPConfig(rrp=True, length_hint=True)
    with pytest.raises(ValueError, match="summarize=False"):
        DRPConfig(user_summary="popi")


@pytest.mark.parametrize("better", [True, False])
def test_a_per_user_summary_that_copies_a_review_is_retried_but_kept_if_nothing_better_comes(better):
    """Seen with the 1.5B model: LLM-TRSR's recap answered with one of the chunk's reviews, word for word, four
    times; failing it lost the user's every target."""
    from drpkit.programs.stages import Recap

    review = ("The horns on the second side are the best thing this band ever put on tape, and the live drums "
              "carry every song to the end.")
    chunk = f'Review 1 (of Live!), rating 5/5, titled "Horns":\n{review}'
    answers = [{"summary": review}] * 2 + [{"summary": "Loves live horn sections and praises drummers."}] * 2
    usage = Usage()
    with dspy.context(lm=DummyLM(answers if better else [{"summary": review}] * 4)):
        summary = Recap(attempts=4)("(none yet)", chunk, usage=usage)
    assert summary == ("Loves live horn sections and praises drummers." if better else review)
    assert "copied verbatim from the prompt" in usage.retries[0]["problem"]
    assert usage.stages["recap"]["calls"] == (3 if better else 4)
