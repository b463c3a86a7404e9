"""Processes the project starts itself: detached servers (pid file, liveness, graceful stop), children that die
with the command that started them, and who holds a port."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def spawn_detached(argv: list[str], *, log_file: Path) -> int:
    """Start a server in its own session with output appended to `log_file`; it outlives no caller's pipes."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
    return os.posix_spawn(
        argv[0],
        argv,
        dict(os.environ),
        file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, str(log_file), flags, 0o644),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ],
        setsid=True,
    )


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def read_pid(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        # A zombie child still answers kill(0); it is not a server any more.
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state == "Z":
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            return False
    return True


def terminate(pid: int, *, grace_s: float = 30.0) -> None:
    """SIGTERM, then SIGKILL after `grace_s`: a hard kill costs log recovery on the next start."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def dying_with(parent: int) -> Callable[[], None]:
    """A `preexec_fn` for children that must not outlive `parent` however it ends (SIGKILL included): the kernel
    sends them SIGTERM when it dies (Linux `PR_SET_PDEATHSIG`; elsewhere nothing is arranged). A parent already
    gone by the time the child runs this makes the child exit at once."""

    def arrange() -> None:
        if not Path("/proc/self").exists():
            return
        if ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM) != 0:
            os._exit(70)
        if os.getppid() != parent:
            os._exit(70)

    return arrange


def listener_of(port: int) -> str | None:
    """Who listens on TCP `port` on this machine, as "pid N (command line)", read from /proc (Linux, and only
    processes this user may inspect); None when it cannot tell."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                    inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd) in inodes:
                    command = " ".join((proc / "cmdline").read_bytes().decode(errors="replace").split("\0"))
                    return f"pid {proc.name} ({' '.join(command.split())[:200]})"
    return None


def bindable(host: str, port: int) -> bool:
    """Whether a server could listen on host:port now (nothing else holds it)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True
