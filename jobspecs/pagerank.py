"""PageRank by power iteration, in three steps: build the graph, iterate, keep the ranks.

Input lines are `node<TAB>target target ...`. A node's out-links are its distinct targets
(a node named on several lines links to all of them); a node that is only ever a target, or
whose line has no tab or no target, has no out-links (it "dangles"). Blank lines are skipped.

With N nodes and damping d, every rank starts at 1/N and each iteration gives each node
(1-d)/N + d * (sum over its in-links u of rank(u)/outdegree(u) + dangling/N), where
dangling is the total rank of the nodes without out-links, spread over all nodes; the ranks
always sum to 1. The iterations stop after `iterations`, or earlier once no rank changed by
more than `tolerance` in an iteration (the spec's `until` on the counter `pagerank, changed`).

The dangling total reaches the next iteration through a counter, in fixed point: each dangling
node adds int(round(rank * scale)) (the param `scale`, 10**18 unless set). Counters are exact
integers of any size, so their total is exact whatever order the tasks commit in, and the next
iteration reads the same number on every run (a float sum would depend on that order).
For the same reason a node's in-link shares are added with math.fsum (exactly rounded, so
independent of their order), and there is no combiner (partial sums would round twice).
"""

import math

from mrctl import Mapper, Reducer

SCALE = 10**18  # fixed point for the dangling total: a rank of 1.0 counts as 10**18 (param `scale`)


class ParseAdjacency(Mapper):
    """Step "graph": each node with its targets, and each target as a node of its own."""

    def map(self, line):
        node, _, targets = line.partition("\t")
        node = node.strip()
        if not node:
            return
        targets = sorted(set(targets.split()))
        yield node, targets
        for target in targets:
            yield target, []


class BuildNode(Reducer):
    """Step "graph": a node's record [rank, targets]: rank None (1/N, but N is not known yet)
    and its sorted distinct targets. Counts nodes and dangling nodes."""

    def reduce(self, node, values):
        targets = sorted(set().union(*values))
        self.increment_counter("pagerank", "nodes")
        if not targets:
            self.increment_counter("pagerank", "dangling_nodes")
        return [None, targets]


def initial_rank(task):
    """1/N, N counted by step "graph"."""
    return 1 / task.job_counters["pagerank", "nodes"]


class SpreadRank(Mapper):
    """Step "iterate": a share rank/outdegree to each target, and the node's record to itself."""

    def map(self, node, record):
        rank, targets = record
        if rank is None:
            rank = initial_rank(self)
        yield node, ("node", rank, targets)
        for target in targets:
            yield target, ("share", rank / len(targets))


class SumRank(Reducer):
    """Step "iterate": a node's new rank, from its shares and the dangling total."""

    def setup(self):
        self.nodes = self.job_counters["pagerank", "nodes"]
        self.scale = int(self.params.get("scale", SCALE))
        if self.iteration == 1:  # every rank is 1/N
            self.dangling = self.job_counters.get(("pagerank", "dangling_nodes"), 0) / self.nodes
        else:  # the fixed-point total the previous iteration's reducers counted
            self.dangling = self.previous_counters.get(("pagerank", "dangling"), 0) / self.scale

    def reduce(self, node, values):
        shares = [value[1] for value in values if value[0] == "share"]
        _, old_rank, targets = next(value for value in values if value[0] == "node")
        if old_rank is None:
            old_rank = initial_rank(self)
        d = self.params["damping"]
        rank = (1 - d) / self.nodes + d * (math.fsum(shares) + self.dangling / self.nodes)
        if not targets:
            self.increment_counter("pagerank", "dangling", int(round(rank * self.scale)))
        changed = abs(rank - old_rank) > self.params["tolerance"]
        self.increment_counter("pagerank", "changed", int(changed))  # 0 too: the counter exists
        return [rank, targets]


class RankOnly(Reducer):
    """Step "ranks": node -> rank, the targets dropped (the last iteration is not known
    in advance, as `until` may stop early, hence a step of its own)."""

    def reduce(self, node, values):
        [[rank, _targets]] = values
        return rank
