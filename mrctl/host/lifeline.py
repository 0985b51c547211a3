"""Child processes that die with the master: the local backend's redis-server and workers.

`guarded(command, parent_pid)` wraps a command in this file, run as a script by the same
Python: it asks Linux to SIGKILL the process when its parent ends (prctl PR_SET_PDEATHSIG,
kept across execve), checks that the parent has not already ended, and execs the command in
place, keeping its pid, environment and file descriptors. So even a SIGKILLed master, which
runs no teardown, takes its redis-server and workers with it.

The "parent" is the thread that started the child: start children from a thread that lives
as long as the cluster (mrctl starts them from the thread that runs the job). On systems
without prctl the command runs unguarded; the workers' own parent-pid check still ends them.

This file imports only the standard library and runs with `python -I -S`, so the guard costs
a few milliseconds, not an import of mrctl.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
EXIT_ORPHANED = 75  # the parent ended before the guard was in place: never run the command


def guarded(command: list[str], parent_pid: int) -> list[str]:
    """`command`, to be started by process `parent_pid`, as a command that dies with it."""
    return [sys.executable, "-I", "-S", os.path.abspath(__file__), str(parent_pid), "--", *command]


def die_with_parent(parent_pid: int) -> bool:
    """Have the kernel SIGKILL this process when its parent ends; exit at once if the parent
    is already gone (this process was then re-parented). False where prctl is unavailable."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_PDEATHSIG): {os.strerror(err)}")
    if os.getppid() != parent_pid:
        os._exit(EXIT_ORPHANED)
    return True


def main(argv: list[str]) -> None:
    """`lifeline.py PARENT_PID -- COMMAND [ARGS...]`: guard this process, then exec COMMAND."""
    parent, separator, *command = argv
    if separator != "--" or not command:
        raise SystemExit("usage: lifeline.py PARENT_PID -- COMMAND [ARGS...]")
    die_with_parent(int(parent))
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
