"""Experiments over runs: grids of methods, variants, models and data (`grid`, `run`), the results table
(`table`), and the analysis of difference features (`analysis`, the paper's RQ2). Ready grids: `grids/`."""

from .analysis import analyze
from .grid import Grid, load_grid
from .run import run_grid

__all__ = ["Grid", "analyze", "load_grid", "run_grid"]
