"""DSPy modules for each DRP stage and the DRP program that composes them."""

from .calls import StageFailure, call_stage
from .drp import DRP, REVIEW_STAGES, STAGES, DRPConfig, stage_names
from .methods import FROM_HISTORY, FROM_SUMMARIZED, METHODS, Method
from .stages import CrossCheck, Distill, Extract, Generate, Infer, Reason, Recap, Refine, Stage, Summarize, Validate
from .usage import Usage
from .users import UserProfiles

__all__ = ["DRP", "DRPConfig", "FROM_HISTORY", "FROM_SUMMARIZED", "METHODS", "Method", "REVIEW_STAGES", "STAGES",
           "CrossCheck", "Distill", "Extract", "Generate", "Infer", "Reason", "Recap", "Refine", "Stage",
           "StageFailure", "Summarize", "Usage", "UserProfiles", "Validate", "call_stage", "stage_names"]
