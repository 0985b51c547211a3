"""A real multi-node Docker Swarm on one host, for the tests and for users (issue 27):

    python -m tests.cluster3 up [--nodes 3]     # prints how to use it
    python -m tests.cluster3 down               # removes what `up` made (or --id ID)

N "node" containers (all but privileged: see NODE_CAPS) on the host's engine, each running its own `dockerd` (Debian's
docker.io), on a private bridge network made for them; node1's engine inits the swarm and the
others join it as workers. The host's engine stays out of the swarm (it only runs the node
containers): a session's own single-node swarm tests, or a user's swarm, are not touched, and
`down` needs no `docker swarm leave` on the host: the swarm lives and dies inside the nodes.
mrctl reaches the manager as `--docker-host tcp://<node1>:2375` (plain TCP on the private
network, which only this host and the nodes are on).

The node image `mrctl-node:<suite>-<hash>` is built once, like mrctl's offline base, from the host's
configured Debian mirror (mrctl.images.debian / rootfs: no apt, no debootstrap): docker.io and
its dependency closure (dockerd, containerd, runc, tini, iptables) on the Essential set. What a
dockerd in a (nearly privileged) container needs here (see NODE_START, NODE_CAPS):
- storage: a volume per node for /var/lib/docker, so that the node's storage is on the host's
  own filesystem, not on the fuse-overlayfs root the host's engine gives containers; on it
  `overlay2` where the kernel has overlayfs, else `vfs` (storage="vfs" forces it), which copies
  the whole image for every container: six workers on three nodes started in 9.5 s with vfs,
  3.9 s with overlay2;
- images: by default the node's dockerd runs a service's task from the image it holds and never
  pulls (DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1): without it every task of an image copied by
  `mrctl images --push-to` waited on a registry this network cannot reach, and the six workers
  took 34 to 45 s to start instead of 4. With offline_images=False nodes pull, for a registry
  on node1 (start_registry, mrctl's --registry);
- iptables: the nft backend where it answers in the node's network namespace (this host's
  own iptables is nft), else legacy; the packages' update-alternatives links are made at start;
- cgroups: the node gets a private cgroup namespace, so its containers' cgroups nest under the
  node's own (cgroup v1 here; on v2 the start script moves itself into a child, as moby's dind).

Every object carries the label `mrctl.test-cluster3=<id>` (and MRCTL_LABELS, a test session's),
and `down` selects by it only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from mrctl.backends.docker import extra_labels
from mrctl.dockerapi import swarm as dockerswarm
from mrctl.dockerapi.host import DockerHost
from mrctl.errors import InfraError
from mrctl.host.dirs import cache_lock
from mrctl.images import debian, rootfs

LABEL = "mrctl.test-cluster3"
TEST_SESSION_LABEL = "mrctl.test-session"  # tests/conftest.py's, through MRCTL_LABELS
NODE_REPO = "mrctl-node"
LABEL_IMAGE = "mrctl.image"  # as mrctl's own images: mrctl-node's value is `node`
NODE_PACKAGES = ("docker.io", "ca-certificates", "mount", "procps")
ENGINE_PORT = 2375
START_PATH = "usr/local/lib/mrctl-node/start.sh"
# The node's entry point: iptables links, cgroup v2 nesting, then dockerd in the foreground.
NODE_START = r"""#!/bin/sh
# A swarm node of tests/cluster3.py: dockerd inside a privileged container.
set -eu
# iptables: nft where it answers in this network namespace, else legacy (the links that
# update-alternatives would have made, had the packages' scripts run)
backend=legacy
if iptables-nft -t nat -L -n >/dev/null 2>&1; then backend=nft; fi
for tool in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
    ln -sf "$tool-$backend" "/usr/sbin/$tool"
done
# not --privileged (see NODE_CAPS): /sys, /proc/sys and the cgroup hierarchies come read-only; the node
# may remount them in its own mount namespace, with CAP_SYS_ADMIN and no seccomp filter
mount -o remount,rw /sys
mount -o remount,bind,rw /proc/sys
while read -r _ target type _; do
    case "$type:$target" in
        cgroup:* | cgroup2:* | *:/sys/fs/cgroup) mount -o remount,bind,rw "$target" ;;
    esac
done < /proc/self/mounts
# storage: overlay2 where the kernel has overlayfs (/var/lib/docker is a volume on the host's
# own filesystem, not the fuse-overlayfs root), else vfs (a full copy per layer and container)
storage="${MRCTL_NODE_STORAGE:-auto}"
if [ "$storage" = auto ]; then
    storage=vfs
    if grep -qw overlay /proc/filesystems; then storage=overlay2; fi
fi
echo "mrctl-node: iptables $backend, storage $storage"
# cgroup v2: leave the namespace's root (the node's cgroup) for a child, so that dockerd may
# enable the controllers there for its containers' cgroups (as moby's hack/dind does)
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    mkdir -p /sys/fs/cgroup/init
    xargs -rn1 < /sys/fs/cgroup/cgroup.procs > /sys/fs/cgroup/init/cgroup.procs || :
    sed -e 's/ / +/g' -e 's/^/+/' < /sys/fs/cgroup/cgroup.controllers \
        > /sys/fs/cgroup/cgroup.subtree_control || :
fi
# MRCTL_NODE_OFFLINE=1: a task runs from the image the node holds, and is never pulled (with
# images copied by `mrctl images --push-to` there is no registry to ask, and each attempt costs
# seconds); a swarm with a registry (Cluster3(offline_images=False)) pulls
if [ "${MRCTL_NODE_OFFLINE:-1}" = 1 ]; then export DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1; fi
# plain TCP on the cluster's private network (--tls=false: said, dockerd does not wait 15 s)
exec dockerd --host=unix:///var/run/docker.sock --host=tcp://0.0.0.0:2375 \
    ${MRCTL_NODE_INSECURE:+--insecure-registry="$MRCTL_NODE_INSECURE"} \
    --tls=false --storage-driver="$storage" --group=root --log-level=warn
"""

Progress = Callable[[str], None]
# A node is not --privileged: that asks runc for every capability, and this host's own engine
# lacks CAP_SYS_RESOURCE ("unable to apply caps: operation not permitted"). It gets every
# capability but that one, no seccomp filter, and every
# device node allowed in its device cgroup, which is what dockerd and runc inside need.
NODE_CAPS = ("CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
             "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
             "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
             "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE",
             "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM",
             "BLOCK_SUSPEND", "AUDIT_READ")
NODE_SECURITY = ("seccomp=unconfined",)


REGISTRY_REPO = "mrctl-registry"
REGISTRY_PORT = 5000
REGISTRY_CONFIG = """version: 0.1
storage:
  filesystem:
    rootdirectory: /var/lib/registry
http:
  addr: :5000
"""


def registry_image(host: DockerHost, on_progress: Progress = print) -> str:
    """`mrctl-registry:<suite>`: Debian's docker-registry (the distribution registry), built once
    from the host's mirror like the node image."""
    ref = f"{REGISTRY_REPO}:{debian.apt_source().suite}"
    with cache_lock("registry-image", on_progress):
        if host.image_id(ref) is None:
            _import_from_debian(host, ref, ("docker-registry", "ca-certificates"),
                                {"etc/mrctl-registry.yml": REGISTRY_CONFIG.encode()},
                                ['CMD ["docker-registry", "serve", "/etc/mrctl-registry.yml"]',
                                 f"LABEL {LABEL_IMAGE}=registry"], on_progress)
    return ref


def _import_from_debian(host: DockerHost, ref: str, packages: tuple[str, ...], files: dict[str, bytes],
                        changes: list[str], on_progress: Progress) -> None:
    archive = debian.Archive(debian.apt_source(), on_progress)
    debs = archive.download(archive.closure(packages, essential=True))
    on_progress(f"unpacking {len(debs)} packages and importing them as {ref} ...")
    with tempfile.TemporaryDirectory(prefix="mrctl-node-") as work:
        tar_path = Path(work) / "rootfs.tar"
        with tar_path.open("wb") as out:
            rootfs.write_rootfs(debs, out, extra=files)
        host.import_rootfs(str(tar_path), ref, [
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", *changes])


def node_image_ref() -> str:
    """`mrctl-node:<suite>-<hash of its packages and start script>`: a changed script is a new image."""
    digest = hashlib.sha256(repr((NODE_PACKAGES, NODE_START)).encode()).hexdigest()[:8]
    return f"{NODE_REPO}:{debian.apt_source().suite}-{digest}"


def ensure_node_image(host: DockerHost, on_progress: Progress = print) -> str:
    """`mrctl-node:<suite>`, built once from the host's Debian mirror (downloads cached)."""
    ref = node_image_ref()
    with cache_lock("node-image", on_progress):
        if host.image_id(ref) is not None:
            return ref
        _import_from_debian(host, ref, NODE_PACKAGES, {START_PATH: NODE_START.encode()},
                            [f'CMD ["sh", "/{START_PATH}"]', f"LABEL {LABEL_IMAGE}=node"], on_progress)
    return ref


class Cluster3:
    """An N-node swarm of dockerd containers on a private network; a context manager.

    After `up()`: `manager_url` (tcp://<node1>:2375, what mrctl's --docker-host takes),
    `node_urls` (every node's engine, node1 first), `addresses` (node name -> IP).
    """

    def __init__(self, nodes: int = 3, ident: str | None = None, on_progress: Progress = print,
                 storage: str = "auto", offline_images: bool = True) -> None:
        if nodes < 1:
            raise ValueError("a swarm needs at least one node")
        self.nodes = nodes
        self.id = ident or uuid.uuid4().hex[:8]
        self.on_progress = on_progress
        self.storage = storage
        self.offline_images = offline_images  # tasks never pull (images --push-to); False: a registry
        self.addresses: dict[str, str] = {}
        self.host: DockerHost | None = None
        self.timings: dict[str, float] = {}

    # -- names ----------------------------------------------------------------------------

    @property
    def network(self) -> str:
        return f"mrctl-c3-{self.id}"

    def node_name(self, i: int) -> str:
        return f"mrctl-c3-{self.id}-node{i}"

    @property
    def labels(self) -> dict[str, str]:
        return {**extra_labels(os.environ.get("MRCTL_LABELS", "")), LABEL: self.id}

    @property
    def node_urls(self) -> list[str]:
        return [f"tcp://{ip}:{ENGINE_PORT}" for ip in self.addresses.values()]

    @property
    def manager_url(self) -> str:
        return self.node_urls[0]

    # -- up -------------------------------------------------------------------------------

    def __enter__(self) -> Cluster3:
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def up(self) -> None:
        started = time.monotonic()
        self.host = DockerHost(timeout=600)
        image = ensure_node_image(self.host, self.on_progress)
        self.timings["image"] = time.monotonic() - started
        self.on_progress(f"cluster3 {self.id}: network {self.network}, {self.nodes} nodes")
        self.host.create_network(self.network, self.labels, internal=True)
        for i in range(1, self.nodes + 1):
            name = self.node_name(i)
            self.host.create_volume(name, self.labels)
            self.host.run_container(
                name, image, labels=self.labels, hostname=f"node{i}", network=self.network,
                cap_add=list(NODE_CAPS), security_opt=list(NODE_SECURITY),
                device_cgroup_rules=["c *:* rwm", "b *:* rwm"], cgroupns="private", init=True,
                environment={"MRCTL_NODE_STORAGE": self.storage, "MRCTL_NODE_OFFLINE": str(int(self.offline_images)),
                             # plain HTTP to a registry on a node (start_registry)
                             "MRCTL_NODE_INSECURE": self.host.network_subnet(self.network)},
                volumes={name: {"bind": "/var/lib/docker", "mode": "rw"}})
            self.addresses[name] = self.host.container_address(name, self.network)
        engines = [self._wait_engine(name, url) for name, url in zip(self.addresses, self.node_urls, strict=True)]
        try:
            manager, *workers = engines
            manager_ip = next(iter(self.addresses.values()))
            dockerswarm.swarm_init(manager, manager_ip)
            token = dockerswarm.worker_join_token(manager)
            for engine, ip in zip(workers, list(self.addresses.values())[1:], strict=True):
                dockerswarm.swarm_join(engine, manager_ip, token, ip)
            self._wait_ready(manager)
        finally:
            for engine in engines:
                engine.close()
        self.timings["up"] = time.monotonic() - started

    def _wait_engine(self, name: str, url: str, timeout: float = 90.0) -> DockerHost:
        deadline = time.monotonic() + timeout
        while True:
            try:
                return DockerHost(timeout=120, base_url=url)
            except InfraError as exc:
                assert self.host
                info = self.host.container(name)
                if info is None or info.status != "running" or time.monotonic() > deadline:
                    tail = b"".join(self.host.logs(name, tail=30)).decode(errors="replace") if info else ""
                    raise InfraError(f"the engine of {name} ({url}) did not answer: {exc}\n{tail}") from None
                time.sleep(0.5)

    def _wait_ready(self, manager: DockerHost, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            found = dockerswarm.nodes(manager)
            if len(found) == self.nodes and all(n.state == "ready" for n in found):
                return
            if time.monotonic() > deadline:
                raise InfraError(f"the swarm's nodes are not all ready after {timeout:g}s: {found}")
            time.sleep(0.5)

    def start_registry(self) -> str:
        """A registry container on node1 (its image copied there), published on node1's address;
        every node may pull from it over plain HTTP. Returns HOST:PORT for mrctl's --registry."""
        assert self.host
        if self.offline_images:
            raise InfraError("a registry needs nodes that pull: Cluster3(offline_images=False)")
        image = registry_image(self.host, self.on_progress)
        with DockerHost(timeout=600, base_url=self.manager_url) as node1:
            if node1.image_id(image) is None:
                dockerswarm.load_image(node1, dockerswarm.save_image(self.host, image))
            address = next(iter(self.addresses.values()))
            node1.run_container(f"mrctl-c3-{self.id}-registry", image, labels=self.labels,
                                ports={f"{REGISTRY_PORT}/tcp": (address, REGISTRY_PORT)})
        return f"{address}:{REGISTRY_PORT}"

    def node_hostnames(self) -> dict[str, str]:
        """Swarm node id -> the node's hostname (node1, node2 ...)."""
        with DockerHost(base_url=self.manager_url) as manager:
            return {n.id: n.hostname for n in dockerswarm.nodes(manager)}

    # -- down -----------------------------------------------------------------------------

    def down(self) -> list[str]:
        """Remove this cluster's node containers, their volumes and the network."""
        started = time.monotonic()
        host = self.host or DockerHost(timeout=600)
        try:
            removed = remove_cluster3(host, {LABEL: self.id})
        finally:
            host.close()
            self.host = None
        self.timings["down"] = time.monotonic() - started
        return removed


def remove_cluster3(host: DockerHost, selector: dict[str, str]) -> list[str]:
    """Every container, volume and network carrying `selector` (cluster3's label), removed.
    The swarm was the nodes' own: it goes with them."""
    removed = []
    for container in host.containers(selector):
        host.remove_container(container.id)
        removed.append(f"container {container.name}")
    for volume in host.volumes(selector):
        host.remove_volume(volume)
        removed.append(f"volume {volume}")
    for network, _ in host.networks(selector):
        host.remove_network(network)
        removed.append(f"network {network}")
    return removed


def left_behind(host: DockerHost, ident: str) -> list[str]:
    """What of cluster `ident` is still on the engine (nothing, after `down`)."""
    selector = {LABEL: ident}
    return ([f"container {c.name}" for c in host.containers(selector)] + [f"volume {v}" for v in host.volumes(selector)]
            + [f"network {n}" for n, _ in host.networks(selector)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.cluster3", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="make an N-node swarm and say how to use it")
    up.add_argument("--nodes", type=int, default=3)
    up.add_argument("--id", default=None, help="the cluster's id (default: a new one)")
    up.add_argument("--json", action="store_true", help="print the cluster as JSON instead")
    down = sub.add_parser("down", help="remove a cluster3 (default: every one but a test session's)")
    down.add_argument("--id", default=None)
    args = parser.parse_args(argv)
    say = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    if args.command == "down":
        started = time.monotonic()
        with DockerHost(timeout=600) as host:
            if args.id:
                removed = remove_cluster3(host, {LABEL: args.id})
            else:  # every one made by `up`, none that a test session is using
                ids = {c.labels[LABEL] for c in host.containers({LABEL: ""}) if TEST_SESSION_LABEL not in c.labels}
                ids |= {labels[LABEL] for _, labels in host.networks({LABEL: ""}) if TEST_SESSION_LABEL not in labels}
                removed = [line for ident in sorted(ids) for line in remove_cluster3(host, {LABEL: ident})]
        say("\n".join(removed) or "no cluster3 objects")
        say(f"down in {time.monotonic() - started:.1f}s")
        return 0
    cluster = Cluster3(args.nodes, args.id, say)
    try:
        cluster.up()
    except BaseException:
        cluster.down()
        raise
    assert cluster.host
    cluster.host.close()
    urls = cluster.node_urls
    if args.json:
        print(json.dumps({"id": cluster.id, "manager": cluster.manager_url, "nodes": urls,
                          "timings": cluster.timings}))
        return 0
    push = " ".join(f"--push-to {u}" for u in urls)
    print(f"""cluster3 {cluster.id}: {args.nodes} nodes up in {cluster.timings['up']:.1f}s (manager node1)
  nodes: {', '.join(f'{n.rsplit("-", 1)[1]} {u}' for n, u in zip(cluster.addresses, urls, strict=True))}
Images on every node (docker save here, docker load there):
  mrctl images --build {push}
A job across the nodes:
  mrctl run jobspecs/wordcount.yaml --backend swarm --workers 6 --docker-host {cluster.manager_url}
The swarm itself:
  DOCKER_HOST={cluster.manager_url} docker node ls
Remove it all:
  python -m tests.cluster3 down --id {cluster.id}""")
    return 0


if __name__ == "__main__":
    sys.exit(main())
