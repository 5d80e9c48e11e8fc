"""``python -m vcoal.cli``."""

from vcoal.cli.main import main

main()
