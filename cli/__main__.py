"""`python -m drpkit.cli`: the `drp` command."""

from .commands import main

main()
