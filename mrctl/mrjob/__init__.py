"""mrjob scripts run unchanged: the bridge inside a task, and the probe that asks a script."""
