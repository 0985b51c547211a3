"""The master: a run's lifecycle, its loop over the task protocol, spill, chaos and signals."""
