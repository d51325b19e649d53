"""Entry point for ``python -m castmetrics``."""

from castmetrics.cli import main

main()
