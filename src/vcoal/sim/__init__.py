"""vcoal.sim."""
