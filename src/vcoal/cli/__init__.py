"""vcoal.cli."""
