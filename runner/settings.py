"""What defines a run's or an optimization's results, recorded in its folder: resuming into a folder made with
other settings is refused. These dataclasses (with `DRPConfig` and `LMSpec`) are the one source of the command
line's options and the grid files' keys: each field's metadata holds its help."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from ..data.loading import ReviewData
from ..data.schema import UserRow
from ..data.tasks import ReviewTask, build_task
from ..programs import DRP, FROM_HISTORY, FROM_SUMMARIZED, METHODS, DRPConfig, stage_names
from ..serving import ADAPTERS, PROMPT_ORDERS, LMSpec, StageLMs
from .errors import SettingsRefused
from .files import write_json


@dataclass(frozen=True, kw_only=True)
class ProgramSettings:
    """The program that runs and optimizations share: the method applied to the program's settings, the
    retrieval sizes, the adapter and each stage's LM (`StageLMs.describe`)."""

    method: str = field(default="drp", metadata={"help": "drp, or a baseline run by the same program"})
    num_retrieved: int = field(default=8, metadata={
        "help": "past reviews retrieved with BM25 for Summarize and Generate (popi: at most --popi-reviews)",
        "run_option": True})
    num_compared: int = field(default=8, metadata={
        "help": "profile items compared with representatives (Extract + Validate calls each)", "run_option": True})
    program: DRPConfig = field(default_factory=DRPConfig)
    adapter: Literal["json", "chat", "text"] = field(default="json", metadata={
        "help": "how DSPy asks for the output fields: JSON (robust with small models), [[ ## ]] chat, or text: "
                "Summarize and Generate answer in plain text, the other stages in JSON", "run_option": True})
    prompt_order: Literal["inputs-first", "task-first"] = field(default="inputs-first", metadata={
        "help": "inputs-first: each prompt's inputs before its task, so that calls sharing inputs share a prefix "
                "the server caches; task-first: DSPy's order", "run_option": True})
    lms: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.adapter not in ADAPTERS:
            raise ValueError(f"adapter: expected one of {sorted(ADAPTERS)}, got {self.adapter!r}")
        if self.prompt_order not in PROMPT_ORDERS:
            raise ValueError(f"prompt_order: expected one of {list(PROMPT_ORDERS)}, got {self.prompt_order!r}")

    def make_adapter(self) -> Any:
        """The DSPy adapter this program asks its LMs with."""
        return ADAPTERS[self.adapter][self.prompt_order]()

    @classmethod
    def for_method(cls, method: str, program: DRPConfig, num_retrieved: int, num_compared: int, lms: StageLMs,
                   **settings: Any) -> Any:
        """The settings `method` runs with: its own program settings and retrieval sizes over the given ones, and
        the LMs of the stages its program has."""
        config, num_retrieved, num_compared = METHODS[method].apply(program, num_retrieved, num_compared)
        return cls(method=method, program=config, num_retrieved=num_retrieved, num_compared=num_compared,
                   lms=lms.describe(stage_names(config)), **settings)

    def task(self, row: UserRow, data: ReviewData, split: str) -> ReviewTask:
        """The sample of `row`, one of `split`'s rows (per-user summaries read the user's reviews before all their
        targets in it; P-DB's, those of similar users too)."""
        neighbours = self.program.similar_users if self.program.user_summary == "p-db" else 0
        return build_task(row, data, self.num_retrieved, self.num_compared, self.program.m, split, neighbours)

    def record(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))


RUN_OPTIONS = {name: ProgramSettings.__dataclass_fields__[name].default
               for name, f in ProgramSettings.__dataclass_fields__.items() if f.metadata.get("run_option")}

PROFILES: dict[str, dict[str, Any]] = {
    # the method as the paper publishes it (the settings' own defaults): the past reviews as one block of text
    "paper": {},
    # the best measured with the 1.5B CPU model on 40 users (README, "Measured here"): Summarize and Generate answer
    # in plain text; a method that shows past reviews continues a document of them under a repetition penalty
    # (rag: no refusal, ROUGE-L best; as a chat turn it refused and fell significantly below non-p); non-p and POPI
    # without reviews, which show none, are asked in a chat turn (as a one-entry document: significantly lower
    # BLEU and METEOR, and POPI significantly lower on all four scores, its reviews a third of the references').
    # Generate writes 8 candidates and keeps the one most like the past reviews shown: on 40 held-out users, rag's
    # BLEU +1.24 [+0.21, +2.04], METEOR and ROUGE-1 up over its greedy review, ROUGE-L -0.008 (n.s.), length ratio
    # 0.52 to 0.84 (4 candidates: 0.75), for about 5 times the decoding. POPI without reviews writes candidates
    # too, picked against the reviews its summary read: on the same users length ratio 0.82, all four scores
    # significantly above non-p's, ROUGE-L above rag's with 8 candidates.
    "cpu": {"adapter": "text", "past_reviews": "document", "repetition_penalty": 1.15, "review_candidates": 8,
            "review_pick": "similarity"},
}
DEFAULT_PROFILE = "cpu"
"""`drp run`'s and `drp optimize`'s starting point (grids start from "paper": their rows are the methods as
published, their variants what departs from them)."""
WITH_HISTORY = (*FROM_HISTORY, "past_reviews", "repetition_penalty")
"""A profile's settings that only a method whose Generate writes from past reviews takes (`FROM_HISTORY`, and how
they are shown to it), save the candidates of a method whose summary read them (`FROM_SUMMARIZED`)."""


def profile_options(name: str, method: str, popi_reviews: int = 0) -> dict[str, Any]:
    """The run options and program settings of profile `name` that apply to `method` (and to POPI with
    `popi_reviews` past reviews beside its summary)."""
    if name not in PROFILES:
        raise ValueError(f"profile: expected one of {sorted(PROFILES)}, got {name!r}")
    history = METHODS[method].generate_reads_history(popi_reviews)
    summarized = METHODS[method].summarizes_user()
    return {key: value for key, value in PROFILES[name].items()
            if history or key not in WITH_HISTORY or (summarized and key in FROM_SUMMARIZED)}


def with_profile(name: str, method: str, given: dict[str, Any]) -> dict[str, Any]:
    """The options `given` over profile `name`'s for `method`. The profile's way of picking a review goes with its
    candidates: options that ask for one review (`review_candidates` 1, as on llama.cpp) have none to pick."""
    chosen = profile_options(name, method, given.get("popi_reviews", 0)) | given
    if chosen.get("review_candidates", 1) == 1 and "review_pick" not in given:
        chosen.pop("review_pick", None)
    return chosen


@dataclass(frozen=True, kw_only=True)
class RunSettings(ProgramSettings):
    """A run over a split: the program's settings and which samples."""

    data: str
    split: str = "test"
    limit: int | None = None
    skip: int = 0  # the first `skip` samples left out (held-out users), before `limit`
    program_state: str | None = None  # the program's prompts (`DRP.fingerprint`), the defaults' or a compiled state's

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.skip < 0:
            raise ValueError(f"skip: the samples left out, 0 or more, got {self.skip}")

    def of(self, program: DRP) -> RunSettings:
        """These settings with `program`'s prompts as this run's adapter writes them: what a run records."""
        return replace(self, program_state=program.fingerprint(self.make_adapter()))


def _identity(record: dict[str, Any]) -> dict[str, Any]:
    """The settings that change results: not which samples (a limit, a skip: rows are kept per sample) or an
    optimizer's budget (more continues the run), not where the servers listen or how long a request may wait; an
    unset setting, or a program or LM option at its default (one added since, say), equals one a record lacks, and
    so does a program option since removed that the record has off (0, False, None)."""
    lm_defaults = LMSpec().describe()
    neutral = {f.name for f in fields(LMSpec) if f.metadata.get("neutral")}
    lms = {stage: {k: v for k, v in spec.items() if k not in neutral and (k not in lm_defaults or lm_defaults[k] != v)}
           for stage, spec in record["lms"].items()}
    defaults = asdict(DRPConfig())
    program = {k: v for k, v in record.get("program", {}).items()
               if (defaults[k] != v if k in defaults else v not in (0, False, None))}
    return ({k: v for k, v in record.items() if k not in ("limit", "skip", "budget") and v is not None}
            | {"lms": lms, "program": program})


def check_settings(path: Path, settings: ProgramSettings) -> None:
    """Write `settings.record()` to `path`, or refuse when the folder was made with other settings."""
    record = settings.record()
    if path.exists():
        previous = _identity(json.loads(path.read_text(encoding="utf-8")))
        if previous != _identity(record):
            changed = sorted(k for k, v in _identity(record).items() if previous.get(k) != v)
            raise SettingsRefused(f"{path.parent} holds a run with other settings ({', '.join(changed)}); "
                             "use another output folder")
    else:
        write_json(path, record)
