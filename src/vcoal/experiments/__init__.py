"""vcoal.experiments."""
