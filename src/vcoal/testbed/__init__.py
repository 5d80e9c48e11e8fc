"""vcoal.testbed."""
