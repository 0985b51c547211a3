"""This host: mrctl's own directories and child processes that die with their parent."""
