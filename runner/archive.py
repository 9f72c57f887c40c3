"""A run folder's archive: its prediction rows without the references (the data set's own text) and its run
record, small enough to keep with the code, so that finished samples outlive the machine that made them. The
folder is restored from the archive and the data; a run with an archive appends each row to both."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..data.tasks import SampleKey
from .errors import BadFile
from .jsonl import JsonlWriter, numbered_rows
from .rows import PredictionRow, read_rows

DATA_FIELDS = ("reference",)  # what an archived row leaves out, and the data gives back


def archived(row: PredictionRow) -> dict[str, Any]:
    """A row as its archive holds it."""
    return {key: value for key, value in row.record().items() if key not in DATA_FIELDS}


def read_archive(path: Path) -> dict[SampleKey, dict[str, Any]]:
    """The latest archived row of each sample in an archive's predictions file."""
    rows: dict[SampleKey, dict[str, Any]] = {}
    for number, raw in numbered_rows(path):
        if "user_id" not in raw:
            raise BadFile(f"{path}:{number}: not an archived prediction row (no 'user_id')")
        rows[SampleKey(raw["user_id"], raw.get("asin", ""), raw.get("timestamp"))] = raw
    return rows


def sync_rows(predictions: Path, archive: Path, references: Mapping[SampleKey, str]) -> None:
    """Make a predictions file and its archive hold the same samples: the archive's rows missing from the file
    are restored with their references (a sample the data does not hold stays archived only), the file's rows
    missing from the archive or newer there are archived. Where both hold a sample, the file's row wins."""
    held = read_rows(predictions)
    kept = read_archive(archive)
    restore = []
    for key, raw in kept.items():
        if key not in held and key in references:
            try:
                restore.append(PredictionRow.model_validate({**raw, "reference": references[key]}))
            except ValueError as error:
                raise BadFile(f"{archive}: the row of {key} is not a prediction row: {error}") from None
    if restore:
        predictions.parent.mkdir(parents=True, exist_ok=True)
        with JsonlWriter(predictions) as sink:
            for row in restore:
                sink.append(row.record())
    news = [archived(row) for key, row in held.items() if kept.get(key) != archived(row)]
    if news:
        archive.parent.mkdir(parents=True, exist_ok=True)
        with JsonlWriter(archive) as sink:
            for raw in news:
                sink.append(raw)


def sync_record(record: Path, archive: Path) -> None:
    """The run record of a folder, copied to its archive; or the archive's, to a folder that has none."""
    source, target = (record, archive) if record.exists() else (archive, record)
    if source.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
