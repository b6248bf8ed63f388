"""The sandbox's first process: isolates itself, then runs the untrusted program in a child.

Run by `tts_opt.tasks.sandbox` as `python -I -S sandbox_boot.py` (stdlib only, imported by
nothing), reading one JSON config line and then the program from stdin, so neither shows in the
process list. With `isolate` it runs as root inside new network, PID and mount namespaces
(`unshare`): it mounts private tmpfs over the world-writable directories, makes the interpreter's
library reachable for an unprivileged user, and the child drops to that user before running the
program. Either way the child gets the resource limits and a socket module that refuses to open
sockets, and prints the config's nonce when the program ran to its end (a program that exits
early, even with status 0, has not passed). This process waits for the child and exits with its
status (128 + signal number when a signal killed it); as PID 1 of the namespace its exit kills
everything the program left behind.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import stat
import sys
import traceback

MS_NOSUID, MS_NODEV, MS_BIND, MS_REC = 2, 4, 4096, 16384
SETUP_FAILED = 3  # the sandbox could not be set up: not the program's fault
PRIVATE_DIRS = ("/tmp", "/var/tmp", "/dev/shm")
WORKDIR = "/tmp/work"


def main() -> None:
    try:
        config = json.loads(sys.stdin.readline())
        source = sys.stdin.read()
        if config["isolate"]:
            _isolate(config)
    except BaseException:
        traceback.print_exc()
        _exit(SETUP_FAILED)
    pid = os.fork()
    if pid == 0:
        _child(config, source)
    status = os.waitpid(pid, 0)[1]
    code = os.waitstatus_to_exitcode(status)
    os._exit(128 - code if code < 0 else code)


def _isolate(config: dict) -> None:
    for directory in PRIVATE_DIRS:
        if os.path.isdir(directory):
            _mount("tmpfs", directory, "tmpfs", MS_NOSUID | MS_NODEV, config["tmpfs"])
    for path in sys.path:
        if os.path.isdir(path):
            _expose(path)
    os.mkdir(WORKDIR, 0o700)
    os.chown(WORKDIR, config["uid"], config["gid"])
    os.chdir(WORKDIR)


def _expose(path: str) -> None:
    """Make `path` reachable for an unprivileged user where an ancestor is closed to others
    (e.g. /root, mode 0700, holding a pyenv interpreter): the ancestor is covered with an open
    tmpfs holding just the branch that leads to `path`, bind-mounted back. Paths stay the same,
    so modules imported before the privilege drop keep working."""
    parts = path.rstrip("/").split("/")
    for depth in range(2, len(parts)):
        ancestor, branch = "/".join(parts[:depth]), "/".join(parts[: depth + 1])
        if os.stat(ancestor).st_mode & stat.S_IXOTH:
            continue
        hold = "/tmp/.hold" + branch.replace("/", "_")
        os.mkdir(hold)
        _mount(branch, hold, "", MS_BIND | MS_REC, "")
        _mount("tmpfs", ancestor, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m")
        os.mkdir(branch)
        _mount(hold, branch, "", MS_BIND | MS_REC, "")


def _mount(source: str, target: str, fstype: str, flags: int, data: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(source.encode(), target.encode(), fstype.encode(), flags, data.encode()):
        errno = ctypes.get_errno()
        raise OSError(errno, f"mount {target}: {os.strerror(errno)}")


def _child(config: dict, source: str) -> None:
    try:
        for name, limit in config["limits"].items():
            resource.setrlimit(getattr(resource, name), tuple(limit))
        if config["isolate"]:
            os.setgroups([])
            os.setgid(config["gid"])
            os.setuid(config["uid"])
        _disable_sockets()
        sys.argv = ["program"]
    except BaseException:
        traceback.print_exc()
        _exit(SETUP_FAILED)
    try:
        exec(compile(source, "program.py", "exec"), {"__name__": "__main__"})
    except SystemExit as stop:
        print(f"program exited before its end: sys.exit({stop.code!r})", file=sys.stderr)
        _exit(1)
    except BaseException:
        traceback.print_exc()
        _exit(1)
    print(f"\n{config['nonce']}")
    _exit(0)


def _disable_sockets() -> None:
    """Refuse new sockets at the Python level: the only network guard without namespaces, and
    bypassable (e.g. through `_socket`); with `isolate` the network namespace is the real one."""
    import socket

    class NoNetwork(socket.socket):
        def __init__(self, *args: object, **kwargs: object) -> None:
            raise PermissionError("network access is disabled in the sandbox")

    socket.socket = NoNetwork  # type: ignore[misc]  # replacing the class is the point


def _exit(code: int) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
