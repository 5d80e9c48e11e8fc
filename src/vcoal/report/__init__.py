"""vcoal.report."""
