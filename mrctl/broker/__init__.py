"""Every Redis command mrctl sends. The master and the workers both go through this package,
so the two sides of the protocol cannot drift apart; each module holds one side of it:

    base      the connection, error translation, registered Lua scripts, Claim
    jobs      the master: publishing jobs and tasks, progress, events, wake-up lists
    attempts  the workers: claims, heartbeats, commits, failures (each a Lua script)
    shuffle   spilling: partitions and outputs leaving Redis and coming back
    warm      warm clusters: the lock, cleanup, history
    live      the web page's channel: a run's live snapshot and its control commands

Redis errors are translated here: a lost connection or a full Redis (maxmemory with
noeviction) becomes an `InfraError` that says what happened and what to change.
"""

from __future__ import annotations

from mrctl.broker.attempts import Attempts
from mrctl.broker.base import (
    FULL_ADVICE,
    MAX_LOST_ATTEMPTS,
    Claim,
    ClaimRequest,
    MapCommit,
    RedisFull,
    RedisLost,
    translated_errors,
)
from mrctl.broker.jobs import Jobs
from mrctl.broker.live import LiveState
from mrctl.broker.shuffle import Shuffle
from mrctl.broker.warm import WarmClusters

__all__ = ["FULL_ADVICE", "MAX_LOST_ATTEMPTS", "Broker", "Claim", "ClaimRequest", "MapCommit", "RedisFull",
           "RedisLost", "translated_errors"]


class Broker(LiveState, WarmClusters, Shuffle, Attempts, Jobs):
    """The protocol's Redis side for one cluster: job publication, claims, commits, leases,
    spilling, warm clusters and the web page's live channel."""
