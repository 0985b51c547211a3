"""The master's spill directory: map partitions and reduce outputs that left Redis, by job and
partition, in files of their own (mrctl.master.spill decides what goes there and when).

Files live in a temp dir of the master's own (the workers never see it: nothing assumes they
share this filesystem), removed by close(); one its master did not live to remove is stray
(mrctl.backends.spill_dirs). A full disk there fails the run with exit 3 (mrctl.io.disk), never a traceback.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, NamedTuple

import msgpack

from mrctl.backends import spill_dirs
from mrctl.errors import InfraError
from mrctl.io import codec
from mrctl.io.disk import full_disk_is_infra, mb

SPACE_FIX = ("Free some space there, or set TMPDIR to a directory on a larger disk (the master spills "
             "there); a larger --redis-memory spills less")


class BlobPlace(NamedTuple):
    """A spilled map blob of a partition: its map index, and where its record is in the file."""

    index: int
    offset: int
    length: int  # of the record (msgpack [index, blob])
    size: int  # of the blob


class SpillStore:
    """Spilled partitions and outputs, by (job, partition), in run `run`'s spill directory;
    `share_done()`: the share of the current phase's tasks committed, to project the space a
    full disk lacked."""

    def __init__(self, run: str = "", share_done: Callable[[], float] = lambda: 1.0) -> None:
        self.run = run
        self.share_done = share_done
        self._dir: Path | None = None
        self._sizes: dict[tuple[str, int], int] = {}  # spilled partition -> bytes in its file
        self._places: dict[tuple[str, int], list[BlobPlace]] = {}  # spilled partition -> its blobs' places
        self.spilled_bytes = 0  # every byte written, partitions and outputs

    def _path(self, name: str) -> Path:
        if self._dir is None:
            with self._writing("making the spill directory", 4096):
                self._dir = spill_dirs.create(self.run or "run")
        return self._dir / name

    def _writing(self, doing: str, size: int) -> AbstractContextManager[None]:
        """Around a write of about `size` bytes: a full disk is an InfraError naming the place."""
        return full_disk_is_infra(self._dir or Path(tempfile.gettempdir()), doing, lambda: self._needed(size),
                                  SPACE_FIX)

    def _needed(self, size: int) -> str:
        spilled, share = self.spilled_bytes, self.share_done()
        projected = (f", {share:.0%} of this phase's tasks done: about {mb(spilled / share)} in all at this pace"
                     if 0 < share < 1 else "")
        return f"this write needed {mb(size)}, after {mb(spilled)} spilled so far{projected}"

    # -- map partitions -------------------------------------------------------------------

    def add_partition(self, job: str, r: int, blobs: dict[int, bytes]) -> None:
        """Append committed blobs (map index -> blob) of partition r."""
        path = self._path(f"{job}.part-{r}")
        places = self._places.setdefault((job, r), [])
        with self._writing(f"spilling map output of partition {r}", sum(map(len, blobs.values()))), \
                path.open("ab") as f:
            for index, blob in blobs.items():
                record = msgpack.packb([index, blob], use_bin_type=True)
                places.append(BlobPlace(index, f.tell(), len(record), len(blob)))
                f.write(record)
                self._sizes[job, r] = self._sizes.get((job, r), 0) + len(blob)
                self.spilled_bytes += len(record)

    def partition_places(self, job: str, r: int) -> list[BlobPlace]:
        """Where partition r's spilled blobs are in its file, in map index order."""
        return sorted(self._places.get((job, r), []))

    def read_blob(self, job: str, r: int, place: BlobPlace) -> bytes:
        """One spilled blob of partition r, read from its file (which stays)."""
        with self._path(f"{job}.part-{r}").open("rb") as f:
            f.seek(place.offset)
            index, blob = msgpack.unpackb(f.read(place.length), raw=False)
        if index != place.index:
            raise InfraError(f"the spill file of partition {r} does not hold map output {place.index} "
                             f"where it was written (found {index}): was it changed on disk?")
        return blob

    def remove_partition(self, job: str, r: int) -> None:
        """Partition r's spilled blobs are no longer needed (its reduce task committed)."""
        self._path(f"{job}.part-{r}").unlink(missing_ok=True)
        self._sizes.pop((job, r), None)
        self._places.pop((job, r), None)

    def partition_bytes(self, job: str, r: int) -> int:
        return self._sizes.get((job, r), 0)

    def has_partitions(self, job: str) -> bool:
        return any(j == job and r >= 0 for j, r in self._sizes)

    def take_partition(self, job: str, r: int) -> dict[int, bytes]:
        """Partition r's spilled blobs, read back and removed from disk."""
        if (job, r) not in self._sizes:
            return {}
        path = self._path(f"{job}.part-{r}")
        with path.open("rb") as f:
            blobs = {index: blob for index, blob in msgpack.Unpacker(f, raw=False)}
        path.unlink()
        del self._sizes[job, r]
        self._places.pop((job, r), None)
        return blobs

    # -- reduce outputs -------------------------------------------------------------------

    def add_output(self, job: str, r: int, blob: bytes, spilled: bool = True) -> None:
        """Reduce r's output; `spilled`: moved out of a full Redis (counted), not just on its
        way to the output file at the end."""
        path = self._path(f"{job}.out-{r}")
        with self._writing(f"moving output {r} to disk{'' if spilled else ' for the merge'}", len(blob)):
            path.write_bytes(blob)
        self._sizes[job, -1 - r] = len(blob)  # outputs are negative partitions: -1 - r
        self.spilled_bytes += len(blob) if spilled else 0

    def output_bytes(self, job: str, r: int) -> int:
        return self._sizes.get((job, -1 - r), 0)

    def take_output(self, job: str, r: int) -> bytes:
        """Reduce r's output blob, read back and removed from disk."""
        path = self._path(f"{job}.out-{r}")
        blob = path.read_bytes()
        path.unlink()
        del self._sizes[job, -1 - r]
        return blob

    def output_pairs(self, job: str, r: int, remove: bool = False) -> Iterator[tuple[Any, Any]]:
        """Reduce r's output pairs, read from its file one at a time (the blob is one msgpack
        array [k1, v1, k2, v2, ...], maybe a zstd frame); `remove`: the file goes once read."""
        path = self._path(f"{job}.out-{r}")
        with path.open("rb") as raw:
            yield from codec.stream_pairs(raw)
        if remove:
            path.unlink()
            del self._sizes[job, -1 - r]

    def close(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
