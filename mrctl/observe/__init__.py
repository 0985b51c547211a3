"""Watching and remembering runs: snapshots, views, reporters, the history and the timeline."""
