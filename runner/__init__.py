"""Running a program over a split: settings records, the prediction row, resumable JSON Lines, metrics files,
output files that survive a kill, and the errors a user can fix."""

from .errors import Abandoned, BadFile, ExpectedError, FolderBusy, SettingsRefused, UsageError, WriteFailed, usage_errors
from .files import atomic_write, folder_lock, replaced, write_json
from .jsonl import JsonlWriter, read_jsonl
from .rows import PREDICTIONS, PredictionRow, read_rows
from .execute import (CONCURRENCY, METRICS, RUN_RECORD, build_tasks, compare_files, evaluate_file, metrics_of,
                      references, run, sample_keys, scored_rows, sync_archive, unfinished, write_metrics)
from .settings import (DEFAULT_PROFILE, PROFILES, RUN_OPTIONS, ProgramSettings, RunSettings, check_settings,
                       profile_options, with_profile)

__all__ = [
    "Abandoned", "BadFile", "CONCURRENCY", "DEFAULT_PROFILE", "ExpectedError", "FolderBusy", "JsonlWriter", "METRICS", "PREDICTIONS",
    "PROFILES", "PredictionRow", "ProgramSettings", "RUN_OPTIONS", "RUN_RECORD", "RunSettings", "SettingsRefused",
    "UsageError", "WriteFailed", "atomic_write", "build_tasks", "check_settings", "compare_files", "evaluate_file",
    "folder_lock", "metrics_of", "profile_options", "read_jsonl", "read_rows", "references", "replaced", "run",
    "sample_keys", "scored_rows", "sync_archive", "unfinished", "usage_errors", "with_profile", "write_json",
    "write_metrics",
]
