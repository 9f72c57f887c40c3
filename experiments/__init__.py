"""Experiments over runs: grids of methods, variants, models and data (`grid`, `run`), the results table
(`table`) and its place in documents (`publish`), and the analysis of difference features (`analysis`, the
paper's RQ2). Ready grids: `grids/`."""

from .analysis import analyze
from .grid import Grid, load_grid, row_name
from .publish import publish
from .run import run_grid

__all__ = ["Grid", "analyze", "load_grid", "publish", "row_name", "run_grid"]
