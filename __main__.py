"""``python -m tradeops``: the same as the ``tradeops`` command."""

from tradeops.cli import main

main()
