"""A scripted LM for optimizer tests: it reads the output fields a prompt asks for and fills them in.

Stage answers depend on the instruction: a proposed instruction (the proposer's answers start with
PROPOSED) makes Summarize, Infer (POPI) and Generate answer closer to the references, so optimizers have
something to find. Every call is counted in `calls`, by kind (task or proposer), across copies of the LM."""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from typing import Any

from dspy.utils import DummyLM

FEATURES = [{"name": "Length", "definition": "How long the review is.", "description": "Shorter than the others."}]
_OUTPUT_FIELDS = re.compile(r"Your output fields are:\n(.*?)\n\n", re.DOTALL)
_FIELD = re.compile(r"^\d+\. `(\w+)`", re.MULTILINE)


class ScriptedLM(DummyLM):
    """Answers any DSPy prompt (ChatAdapter or JSONAdapter) by filling the requested output fields."""

    def __init__(self):
        super().__init__([], follow_examples=True)
        self.calls: Counter[str] = Counter()
        self.lock = threading.Lock()

    def __deepcopy__(self, memo: dict) -> ScriptedLM:
        return self  # program copies share the LM and its counts

    def _use_example(self, messages: list[dict[str, Any]]) -> str:
        system, user = messages[0]["content"], messages[-1]["content"]
        fields = _FIELD.findall(_OUTPUT_FIELDS.search(system).group(1))
        proposing = any("instruction" in f or "description" in f for f in fields)
        with self.lock:
            kind = "proposer" if proposing else "task"
            self.calls[kind] += 1
            number = self.calls[kind]
        answer = {f: self._answer(f, system, user, number) for f in fields}
        return json.dumps(answer) if "JSON object" in system else self._format_answer_fields(answer)

    @staticmethod
    def _answer(field: str, system: str, user: str, number: int) -> Any:
        proposed = "PROPOSED" in system
        if "instruction" in field:
            return f"Write the review as this user would, in their words (PROPOSED {number})."
        if field == "differences":
            return FEATURES
        if field == "keep":
            return [1]
        if field in ("facts", "traits"):  # P-DB's persona
            return ["writes blunt, short reviews", "likes rock albums"]
        if field == "inconsistencies":  # RRP's cross-check
            return []
        if field == "user_traits":
            return "Blunt and short, as in Review 1."
        if field == "summary":
            return "A blunt writer of short reviews." if proposed else "A writer."
        if field == "preferences":
            return "Thinks album 3 is fine." if proposed else "Likes music."
        if field == "review":
            review = ("I think album 3 is fine" if proposed or "Thinks album 3 is fine" in user
                      else "Generic text about music here")
            return review + (" and blunt." if "blunt writer" in user else ".")
        if field.startswith("proposed_prefix"):
            return "Review:"
        return f"A {field.replace('_', ' ')}."
