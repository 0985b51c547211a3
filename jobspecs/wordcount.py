"""Word count, the classic MapReduce example.

Words are maximal runs of letters (Unicode letters, so "café" is one word), lowercased.
"""

import re
from collections import Counter

from mrctl import Mapper, Reducer

WORD = re.compile(r"[^\W\d_]+")


class WordMapper(Mapper):
    """The textbook mapper: one call per line, one (word, 1) pair per word."""

    def map(self, line):
        for word in WORD.findall(line):
            yield word.lower(), 1


class FastWordMapper(Mapper):
    """The same words, counted a whole chunk at a time (in-mapper combining): much faster."""

    def map_chunk(self, text):
        return Counter(WORD.findall(text.lower())).items()


class SumReducer(Reducer):
    """Adds up the counts of a word; also used as the combiner."""

    def reduce(self, key, values):
        return sum(values)
