"""Inverted index: for each word, the files it occurs in.

Words are the word count's: maximal runs of (Unicode) letters, lowercased. A file is named by
its base name (`data/cafe.txt` gives `cafe.txt`), taken from `self.input_path`, so the input
needs no rewriting to say where each line came from. The output maps each word to the sorted
list of the files it occurs in.
"""

import os
import re

from mrctl import Mapper, Reducer

WORD = re.compile(r"[^\W\d_]+")


class WordFileMapper(Mapper):
    """One (word, file) pair per distinct word of a line."""

    def map(self, line):
        file = os.path.basename(self.input_path)
        for word in {word.lower() for word in WORD.findall(line)}:
            yield word, file


class DistinctFiles(Reducer):
    """The combiner: each file of a word once per map task (a word occurs on many lines)."""

    def reduce(self, key, values):
        for file in sorted(set(values)):
            yield key, file


class FileListReducer(Reducer):
    """The files of a word, each once, sorted."""

    def reduce(self, key, values):
        return sorted(set(values))
