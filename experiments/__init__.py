"""Experiments over runs: grids of methods, variants, models and data (`grid`, `run`), the results table
(`table`) and its place in documents (`publish`), and the analysis of difference features (`analysis`, the
paper's RQ2). Ready grids: `grids/`."""

from .analysis import analyze
from .grid import Grid, load_grid
from .publish import publish
from .run import run_grid

__all__ = ["Grid", "analyze", "load_grid", "publish", "run_grid"]
