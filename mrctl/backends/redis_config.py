"""The configuration of a cluster's Redis container, given as a file and never on a command line.

A password on redis-server's command line shows in `ps` on the host and, for as long as the
container exists, in `docker inspect` (Config.Cmd, Args). The cluster copies this file into the
container before starting it (see DockerHost.run_container) and runs `redis-server <file>`.
"""

from __future__ import annotations

import re

from mrctl.errors import SpecError
from mrctl.spec.sizes import REDIS_UNITS, size_in

MIB = 2**20

# Commands mrctl never sends and a job's code (which holds the password) must not: MIGRATE,
# REPLICAOF/SLAVEOF and FAILOVER make Redis open connections of its own — Redis sits on a
# network with a route to the host, the workers do not; CONFIG, ACL, MODULE and DEBUG would
# let a client undo these rules or the memory limit; SAVE, BGSAVE (a fork) and BGREWRITEAOF
# would write the dataset into Redis's memory-backed /tmp, eating the headroom of its limit.
DENIED_COMMANDS = ("migrate", "replicaof", "slaveof", "failover", "config", "acl", "module", "debug",
                   "save", "bgsave", "bgrewriteaof")


def memory_bytes(text: str) -> int | None:
    """`text` in Redis's memory notation ("1gb", "512mb", "100m", "123") as bytes, or None
    when it is not one (redis-server then refuses it at start with its own message)."""
    if " " in text.strip():  # Redis reads one token: "12 mb" is not a size there
        return None
    return size_in(text, REDIS_UNITS, fractions=False)


def container_memory_limit(maxmemory: str) -> int | None:
    """The Redis container's memory limit: `maxmemory` plus headroom for what it does not
    count (allocator fragmentation, the process itself), so that a full Redis answers with
    its clear OOM error long before the kernel kills it. None for an unlimited maxmemory."""
    size = memory_bytes(maxmemory)
    if not size:
        return None
    return size + max(64 * MIB, size // 2)


def redis_conf(password: str, maxmemory: str, workdir: str) -> str:
    """redis.conf for a cluster: the default user needs `password` and may run every command
    but DENIED_COMMANDS; memory is capped with noeviction (a full Redis fails the job rather
    than drop data); nothing is persisted; `workdir` is the only place it may write."""
    if not re.fullmatch(r"[\w.+-]+", maxmemory):
        # One token only: a value with spaces, quotes or line breaks would add config lines.
        raise SpecError(f"--redis-memory {maxmemory!r}: expected a size such as 512mb or 2gb")
    if not re.fullmatch(r"\w+", password):
        raise ValueError("the Redis password must be a single word")
    denied = " ".join(f"-{command}" for command in DENIED_COMMANDS)
    return "\n".join([
        f"user default on >{password} ~* &* +@all {denied}",
        f"maxmemory {maxmemory}",
        "maxmemory-policy noeviction",
        'save ""',
        "appendonly no",
        f"dir {workdir}",
        "",
    ])
