"""The job spec: YAML validated into frozen dataclasses, with errors that say file, line and key."""
