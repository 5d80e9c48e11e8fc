"""vcoal.linux."""
