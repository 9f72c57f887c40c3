"""One DSPy signature per DRP stage: its docstring is the stage's instruction."""

from .extract import ExtractContentDifferences, ExtractDifferences, ExtractFixedDifferences
from .features import DifferenceFeature
from .generate import REVIEW_DOCUMENT, GenerateContrastiveReview, GenerateReview
from .judge import JudgeFeature
from .persona import DistillPersona, RefinePersona
from .preferences import InferPreferences
from .reason import CrossCheckReview, ReasonedReview
from .recap import RecapHistory
from .summarize import SummarizeProfile
from .validate import ValidateContentDifferences, ValidateDifferences

__all__ = [
    "REVIEW_DOCUMENT",
    "CrossCheckReview",
    "DifferenceFeature",
    "DistillPersona",
    "ExtractContentDifferences",
    "ExtractDifferences",
    "ExtractFixedDifferences",
    "GenerateContrastiveReview",
    "GenerateReview",
    "InferPreferences",
    "JudgeFeature",
    "ReasonedReview",
    "RecapHistory",
    "RefinePersona",
    "SummarizeProfile",
    "ValidateContentDifferences",
    "ValidateDifferences",
]
