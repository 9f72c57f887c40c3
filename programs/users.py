"""Summaries made once per user (POPI's preferences, LLM-TRSR's recurrent summary, P-DB's personas, Summarize
with `summary_scope = "user"`) from the reviews before all the user's targets, reused by each of those targets."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .calls import StageFailure
from .usage import Usage


@dataclass
class Work:
    """What a sample (or the making of a per-user summary) cost and used: its LM usage, the failures it went on
    after, a record of each per-user summary it used (`UserProfile.record`), and Generate's review candidates."""

    usage: Usage = field(default_factory=Usage)
    failures: list[dict] = field(default_factory=list)
    profiles: list[dict] = field(default_factory=list)
    candidates: list[dict] = field(default_factory=list)

    def take(self, profile: UserProfile, made: bool) -> Any:
        """Use `profile`: the work of making it is charged here if it was made for this sample, not if reused.
        Returns its value; raises its stage's failure if it has none."""
        if made:
            self.usage.merge(profile.work.usage)
            self.failures.extend(profile.work.failures)
            self.profiles.extend(profile.work.profiles)
        self.profiles.append(profile.record(made))
        if profile.failure is not None:
            raise profile.failure
        return profile.value


@dataclass
class UserProfile:
    """One per-user summary: `value` is JSON (a text, a persona), None when the stage making it failed."""

    kind: str
    user_id: str
    key: str
    value: Any = None
    failure: StageFailure | None = None
    work: Work = field(default_factory=Work)

    def record(self, made: bool) -> dict[str, Any]:
        """As a prediction row holds it (`made`: this sample paid for it), and as `UserProfiles.restore` reads it."""
        return {"kind": self.kind, "user_id": self.user_id, "key": self.key, "value": self.value,
                "failure": self.failure.record() if self.failure else None, "made": made}


def profile_key(kind: str, user_id: str, reads: Any, prompts: Any) -> str:
    """What a per-user summary depends on: its kind, the user, the reviews it reads (`reads`, by item and time)
    and the prompts of the stages that make it; not the generator, so every generator reuses it."""
    text = json.dumps([kind, user_id, reads, prompts], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class UserProfiles:
    """The per-user summaries of one program, each made once, by the first sample of the user that asks for it
    (the user's other samples in flight wait for it), and kept for the others. The copies an optimizer makes of
    the program share it: a key holds the prompts that made the summary. A resumed run restores it from the
    rows it wrote."""

    def __init__(self) -> None:
        self.made: dict[str, UserProfile] = {}
        self.locks: dict[str, threading.Lock] = {}
        self.lock = threading.Lock()

    def __deepcopy__(self, memo: dict) -> UserProfiles:
        return self

    def get(self, kind: str, user_id: str, key: str, make: Callable[[Work], Any]) -> tuple[UserProfile, bool]:
        """The profile under `key`, and whether this call made it (with `make`, which charges its `Work`)."""
        with self.lock:
            lock = self.locks.setdefault(key, threading.Lock())
        with lock:
            if key in self.made:
                return self.made[key], False
            profile = UserProfile(kind, user_id, key)
            try:
                profile.value = make(profile.work)
            except StageFailure as failure:  # final, as a failed sample is: the user's other targets fail too
                profile.failure = failure
            self.made[key] = profile
            return profile, True

    def restore(self, records: Iterable[dict[str, Any]]) -> None:
        """Keep the profiles that rows of an earlier run recorded (`UserProfile.record`)."""
        with self.lock:
            for record in records:
                failure = record["failure"]
                self.made.setdefault(record["key"], UserProfile(
                    record["kind"], record["user_id"], record["key"], record["value"],
                    StageFailure(failure["stage"], failure["problems"]) if failure else None))
