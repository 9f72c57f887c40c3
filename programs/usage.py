"""What LM calls cost, per stage: counted from dspy's usage tracker, and summed here, once for every place
that adds usage up (a sample, a run, a grid cell, an analysis). A cache hit costs nothing."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from dspy.utils.usage_tracker import UsageTracker

COUNTS = ("calls", "prompt_tokens", "completion_tokens")


@dataclass
class Usage:
    stages: dict[str, dict[str, int]] = field(default_factory=dict)
    # every rejected answer, also when a retry worked, and every review cut short of a comment on it
    retries: list[dict[str, str]] = field(default_factory=list)

    def add_tracked(self, stage: str, tracker: UsageTracker) -> None:
        """The calls a `dspy.track_usage()` context saw, charged to `stage`."""
        calls = sum(len(entries) for entries in tracker.usage_data.values())
        totals = tracker.get_total_tokens().values()
        self.add(stage, {"calls": calls, **{key: sum(int(t.get(key) or 0) for t in totals) for key in COUNTS[1:]}})

    def add(self, stage: str, counts: Mapping[str, float]) -> None:
        totals = self.stages.setdefault(stage, dict.fromkeys(COUNTS, 0))
        for key in COUNTS:
            totals[key] += counts.get(key, 0)

    def merge(self, other: Usage) -> None:
        """Add `other`'s counts and retries (the usage of work done in parallel, merged in a fixed order)."""
        for stage, counts in other.stages.items():
            self.add(stage, counts)
        self.retries.extend(other.retries)

    @classmethod
    def sum(cls, per_stage: Iterable[Mapping[str, Mapping[str, float]]]) -> Usage:
        """The sum of several `stages` records (e.g. the usage of each row of a run)."""
        usage = cls()
        for stages in per_stage:
            for stage, counts in stages.items():
                usage.add(stage, counts)
        return usage

    def total(self) -> dict[str, int]:
        return {key: sum(counts[key] for counts in self.stages.values()) for key in COUNTS}

    def per(self, n: int) -> dict[str, dict[str, float]]:
        """Each stage's counts divided by `n` (per sample), to one decimal."""
        return {stage: {key: round(value / max(n, 1), 1) for key, value in counts.items()}
                for stage, counts in self.stages.items()}
