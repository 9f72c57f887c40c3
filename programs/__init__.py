"""DSPy modules for each DRP stage and the DRP program that composes them."""

from .calls import StageFailure, call_stage
from .drp import DRP, STAGES, DRPConfig
from .methods import FROM_HISTORY, METHODS, Method
from .stages import Extract, Generate, Stage, Summarize, Validate
from .usage import Usage

__all__ = ["DRP", "DRPConfig", "FROM_HISTORY", "METHODS", "Method", "STAGES", "Extract", "Generate", "Stage", "StageFailure",
           "Summarize", "Usage", "Validate", "call_stage"]
