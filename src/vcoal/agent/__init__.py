"""vcoal.agent."""
