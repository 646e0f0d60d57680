"""Training: the Lightning module, the run directory, tracking, sweeps."""
