"""The configuration of a cluster's Redis container, given as a file and never on a command line.

A password on redis-server's command line shows in `ps` on the host and, for as long as the
container exists, in `docker inspect` (Config.Cmd, Args). The cluster copies this file into the
container before starting it (see DockerHost.run_container) and runs `redis-server <file>`.
"""

from __future__ import annotations

import re

from mrctl.errors import SpecError


def redis_conf(password: str, maxmemory: str, workdir: str) -> str:
    """redis.conf for a cluster: the default user needs `password`; memory is capped with
    noeviction (a full Redis fails the job rather than drop data); nothing is persisted;
    `workdir` is the only place it writes."""
    if not re.fullmatch(r"[\w.+-]+", maxmemory):
        # One token only: a value with spaces, quotes or line breaks would add config lines.
        raise SpecError(f"--redis-memory {maxmemory!r}: expected a size such as 512mb or 2gb")
    if not re.fullmatch(r"\w+", password):
        raise ValueError("the Redis password must be a single word")
    return "\n".join([
        f"user default on >{password} ~* &* +@all",
        f"maxmemory {maxmemory}",
        "maxmemory-policy noeviction",
        'save ""',
        "appendonly no",
        f"dir {workdir}",
        "",
    ])
