"""Group by: rows of a CSV file grouped by one column, with a count and a sum per group,
like SQL's `SELECT by, COUNT(*), SUM(sum) ... GROUP BY by`.

Params: `by`, the column to group by, and `sum`, a numeric column to add up. Each row arrives
as a dict keyed by the file's header row. The output maps each value of `by` to
{"count": rows, "sum": total}. A number is read as an int when it is one ("123") and as a float
otherwise ("1.5"), so a column of ints sums to an int; a value that is neither fails its record
(add `bad_records: {policy: skip}` to the spec to skip such rows instead). A float total may
differ in its last digits with the way rows are split between tasks, as any float sum does.
"""

from mrctl import Mapper, Reducer


def number(text):
    """Parse "123" as 123 and "1.5" as 1.5; anything else raises ValueError."""
    try:
        return int(text)
    except ValueError:
        return float(text)


class GroupMapper(Mapper):
    """One {"count": 1, "sum": value} per row, keyed by the row's `by` column."""

    def map(self, row):
        yield row[self.params["by"]], {"count": 1, "sum": number(row[self.params["sum"]])}


class SumGroups(Reducer):
    """Adds up counts and sums; also used as the combiner (its output has its input's shape)."""

    def reduce(self, key, values):
        return {"count": sum(v["count"] for v in values), "sum": sum(v["sum"] for v in values)}
