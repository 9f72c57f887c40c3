"""One DSPy signature per DRP stage: its docstring is the stage's instruction."""

from .extract import ExtractDifferences, ExtractFixedDifferences
from .features import DifferenceFeature
from .generate import GenerateContrastiveReview, GenerateReview
from .judge import JudgeFeature
from .summarize import SummarizeProfile
from .validate import ValidateDifferences

__all__ = [
    "DifferenceFeature",
    "ExtractDifferences",
    "ExtractFixedDifferences",
    "GenerateContrastiveReview",
    "GenerateReview",
    "JudgeFeature",
    "SummarizeProfile",
    "ValidateDifferences",
]
