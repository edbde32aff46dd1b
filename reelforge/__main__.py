"""``python -m reelforge``: the `reelforge` command."""

from reelforge.cli.main import main

main()
