"""Prompt optimization of the DRP program's instructions against BLEU/ROUGE-L on a dev split."""

from .examples import Portion, make_examples
from .logs import CandidateLog, EvaluationLog, LoggedDRP, stage_instructions
from .objective import OBJECTIVES, ReviewMetric, review_feedback, rouge_l, sentence_bleu
from .optimize import OPTIMIZERS, OptimizeSettings, load_compiled, optimize, optimize_only

__all__ = [
    "CandidateLog", "EvaluationLog", "LoggedDRP", "OBJECTIVES", "OPTIMIZERS", "OptimizeSettings", "Portion",
    "ReviewMetric", "load_compiled", "make_examples", "optimize", "optimize_only",
    "review_feedback", "rouge_l", "sentence_bleu", "stage_instructions",
]
