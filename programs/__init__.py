"""DSPy modules for each DRP stage and the DRP program that composes them."""

from .calls import StageFailure, Usage
from .drp import DRP, DRPConfig
from .methods import METHODS, Method
from .stages import STAGES, Extract, Generate, Summarize, Validate

__all__ = ["DRP", "DRPConfig", "METHODS", "Method", "STAGES", "Extract", "Generate", "StageFailure", "Summarize", "Usage", "Validate"]
