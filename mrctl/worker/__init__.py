"""The worker: claims a task, runs the job's code on it, commits under its fencing token."""
