"""The prediction row: one sample's result as `predictions.jsonl` holds it, written, read, resumed, scored
and analysed through this one type."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from ..data.tasks import SampleKey
from .errors import BadFile
from .jsonl import numbered_rows

PREDICTIONS = "predictions.jsonl"
Status = Literal["ok", "failed", "error"]


class PredictionRow(BaseModel):
    """`ok`: a review; `failed`: the method gave no usable review after every attempt (final: a rerun would
    replay the same answers); `error`: an exception (a dead server, say), retried by the next run."""

    model_config = ConfigDict(extra="ignore")

    user_id: str
    asin: str = ""
    timestamp: int | None = None
    reference: str
    status: Status
    prediction: str | None = None
    error: str | None = None
    summary: str | None = None
    history: list[str] = []
    comparisons: list[dict[str, Any]] = []
    user_profiles: list[dict[str, Any]] = []  # per-user summaries used (`made`: this sample paid for it)
    reasoning: dict[str, Any] = {}  # RRP's levels: user_traits, item_plan, draft, inconsistencies
    candidates: list[dict[str, Any]] = []  # --review-candidates: each review, usable, score, picked
    failures: list[dict[str, Any]] = []
    retries: list[dict[str, str]] = []
    usage: dict[str, dict[str, int]] = {}
    seconds: float = 0.0

    @property
    def key(self) -> SampleKey:
        return SampleKey(self.user_id, self.asin, self.timestamp)

    @property
    def finished(self) -> bool:
        """A result of the method (a review or a final failure), not an error to retry."""
        return self.status != "error"

    def record(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def read_rows(path: Path) -> dict[SampleKey, PredictionRow]:
    """The latest row of each sample in a predictions file (a retried sample appends a newer row)."""
    rows: dict[SampleKey, PredictionRow] = {}
    for number, raw in numbered_rows(path):
        try:
            row = PredictionRow.model_validate(raw)
        except ValueError as error:
            raise BadFile(f"{path}:{number}: not a prediction row: {error}") from None
        rows[row.key] = row
    return rows


def latest(rows: dict[SampleKey, PredictionRow], key: SampleKey) -> PredictionRow | None:
    """The row of `key`; a row written before keys had a timestamp matches on user and item."""
    return rows.get(key) or rows.get(key._replace(timestamp=None))
