"""Running a program over a split: settings records, the prediction row, resumable JSON Lines, metrics files."""

from .jsonl import JsonlWriter, read_jsonl, write_json
from .rows import PREDICTIONS, PredictionRow, read_rows
from .execute import (CONCURRENCY, METRICS, RUN_RECORD, build_tasks, compare_files, evaluate_file, metrics_of, run,
                      sample_keys, scored_rows, unfinished, write_metrics)
from .settings import RUN_OPTIONS, ProgramSettings, RunSettings, check_settings

__all__ = [
    "CONCURRENCY", "JsonlWriter", "METRICS", "PREDICTIONS", "PredictionRow", "ProgramSettings", "RUN_OPTIONS", "RUN_RECORD",
    "RunSettings", "build_tasks", "check_settings", "compare_files", "evaluate_file", "metrics_of", "read_jsonl", "read_rows", "run",
    "sample_keys", "scored_rows", "unfinished", "write_json", "write_metrics",
]
