"""Bytes in and out: input formats, chunks, the codec of keys and values, and the output file."""
