"""The methods of the paper's comparison, as settings of the one DRP program (no forks of the pipeline)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from .drp import DRPConfig


FROM_HISTORY = {"length_hint": False, "style_hint": False, "length_floor": 0.0, "review_candidates": 1,
                "review_pick": "length"}
"""Program settings measured from the past reviews shown, with their value when off: a method that shows none
cannot have them, save `FROM_SUMMARIZED`."""
FROM_SUMMARIZED = ("review_candidates", "review_pick")
"""Those of `FROM_HISTORY` that a method showing no past review can have when a per-user summary reads the user's
(POPI): Generate's candidates are picked in code against the reviews the summary read, none of them shown."""


@dataclass(frozen=True)
class Method:
    """What a method keeps of DRP: the history, the compared items, and which stages run."""

    name: str
    description: str
    history: bool = True
    compare: bool = True
    config: dict[str, Any] = field(default_factory=dict)

    def shown(self, num_retrieved: int, popi_reviews: int) -> int:
        """How many of `num_retrieved` past reviews the method shows (POPI: at most `popi_reviews`, beside its
        summary)."""
        if not self.history:
            return 0
        return min(num_retrieved, popi_reviews) if self.config.get("user_summary") == "popi" else num_retrieved

    def generate_reads_history(self, popi_reviews: int = 0) -> bool:
        """Whether Generate writes from past reviews, if any are retrieved, so that how they are shown to it can be
        set (RRP's template writes from them instead, as a block)."""
        return not self.config.get("rrp") and self.shown(1, popi_reviews) > 0

    def summarizes_user(self) -> bool:
        """Whether a per-user summary reads the user's past reviews (POPI, LLM-TRSR, P-DB), so that Generate's
        candidates can be picked against them though none is shown (`FROM_SUMMARIZED`)."""
        return self.config.get("user_summary", "none") != "none"

    def apply(self, config: DRPConfig, num_retrieved: int, num_compared: int) -> tuple[DRPConfig, int, int]:
        """The program config and the retrieval sizes this method runs with."""
        config = replace(config, **self.config)
        num_retrieved = self.shown(num_retrieved, config.popi_reviews)
        summarized = config.user_summary != "none"
        for hint in FROM_HISTORY:
            if (getattr(config, hint) != FROM_HISTORY[hint] and num_retrieved == 0
                    and not (summarized and hint in FROM_SUMMARIZED)):
                raise ValueError(f"{self.name} shows no past reviews (num_retrieved 0), so it has no length or "
                                 f"style to go by ({hint})")
        return config, num_retrieved, num_compared if self.compare else 0


METHODS = {m.name: m for m in (
    Method("non-p", "no personalization: the item, rating and review title only",
           history=False, compare=False, config={"summarize": False}),
    Method("rag", "the user's BM25-retrieved past reviews in context", compare=False, config={"summarize": False}),
    Method("intsum", "a summary of the retrieved history, then generation from history + summary", compare=False),
    Method("cicl", "contrastive in-context learning: the user's reviews of compared items as positive examples, "
           "the representatives' reviews of the same items as negative ones",
           config={"contrast": True, "validate": False, "summarize": False}),
    Method("dpl", "DPL: differences on three fixed dimensions, no validation",
           config={"dimensions": "fixed", "validate": False}),
    Method("drp", "DRP: discovered differences, validated, summarized"),
    Method("popi", "POPI: a preference summary inferred once per user from their reviews before all their targets, "
           "in place of the history (with --popi-reviews, a few retrieved reviews beside it)",
           compare=False, config={"user_summary": "popi", "summarize": False}),
    Method("rrp", "RRP: the retrieved reviews, reasoned through a hierarchical template (the user's traits, a plan "
           "for the item, the review) that a check holds the answer to, then cross-checked against those reviews",
           compare=False, config={"rrp": True, "summarize": False}),
    Method("llm-trsr", "LLM-TRSR: the retrieved reviews and a summary of the user's history, made once per user "
           "recurrently, chunk by chunk", compare=False, config={"user_summary": "llm-trsr", "summarize": False}),
    Method("p-db", "P-DB: the retrieved reviews and a persona made once per user (facts, then traits, refined with "
           "similar users' personas), its facts retrieved for the target",
           compare=False, config={"user_summary": "p-db", "summarize": False}),
)}
