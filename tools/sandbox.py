"""A sandbox for one submission: Debian's bubblewrap, inside a memory and a pids cgroup.

The student's notebook runs with only what it needs mounted (``/usr``, the Python installation and
the virtual environment read-only, ``nst/`` and ``data/`` read-only at ``/opt/nst``, one hidden-test
file at ``/grader``, the submission's throwaway folder read-write at ``/course``), a private
``/tmp``, ``/run`` and a small ``/dev/shm``, no network (only its own loopback), no host
processes (its own PID namespace, so nothing it starts outlives it), an empty environment
but for the variables given, and no capabilities. Its memory (shared memory and memfd
included), its number of tasks and its CPU time are capped by cgroups:

- as root with cgroup v1 (``/sys/fs/cgroup/memory``, as on this project's CI), a child cgroup of
  our own in the memory and pids hierarchies;
- as another user with cgroup v2 and systemd, a transient scope: ``systemd-run --user --scope
  -p MemoryMax=... -p MemorySwapMax=0 -p TasksMax=...`` (its command line is unit-tested; it has
  not been run on this project's CI, which grades as root).

Anything else raises SandboxUnavailable with one sentence; ``python -m tools.grade`` then refuses
to grade unless the instructor passes ``--unsafe``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

INSTALL = "sudo apt-get install bubblewrap"
# What Python, torch and matplotlib read from /etc.
ETC = "ld.so.cache ld.so.conf ld.so.conf.d passwd group nsswitch.conf hosts localtime fonts".split()
ETC += ["mime.types", "ssl"]


class SandboxUnavailable(Exception):
    """Grading cannot be sandboxed here; the message says why and what to do."""


@dataclass(frozen=True)
class Limits:
    """What one submission may use."""

    memory_mb: int = 4096  # resident + page cache + shared memory of every process in the sandbox
    data_mb: int = 3000  # RLIMIT_DATA per process: a large allocation fails with MemoryError first
    tasks: int = 512  # processes and threads (torch starts one thread per core)
    shm_mb: int = 64  # the size of the sandbox's /dev/shm
    file_mb: int = 512  # the largest file it may write (RLIMIT_FSIZE)
    cpus: float = 1.0  # CPU time per second of wall time: a spinning fork bomb starves only itself


def mode() -> str:
    """How this machine can sandbox: "cgroup1" (root) or "systemd" (user); else raise."""
    if shutil.which("bwrap") is None:
        raise SandboxUnavailable(f"bubblewrap is not installed: run `{INSTALL}`.")
    if os.geteuid() == 0:
        if _cgroup1_parent("memory") and _cgroup1_parent("pids"):
            return "cgroup1"
        raise SandboxUnavailable(
            "as root, grading needs the cgroup v1 memory and pids controllers, which this "
            "machine lacks: grade as a normal user with systemd (cgroup v2)."
        )
    if Path("/sys/fs/cgroup/cgroup.controllers").is_file() and shutil.which("systemd-run"):
        return "systemd"
    raise SandboxUnavailable(
        "grading as a normal user needs cgroup v2 with systemd (systemd-run --user); "
        "grade as root on a machine with cgroup v1, or on one with systemd."
    )


def _cgroup1_parent(controller: str) -> Path | None:
    """This process's own cgroup v1 folder for ``controller``, if it is mounted and writable."""
    base = Path("/sys/fs/cgroup") / controller
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, names, path = line.split(":", 2)
            if controller in names.split(","):
                folder = base / path.lstrip("/")
                return folder if os.access(folder, os.W_OK) else None
    except OSError:
        return None
    return None


def bwrap_argv(
    command: list[str],
    course: Path,
    read_only: dict[str, str],
    env: dict[str, str],
    limits: Limits,
) -> list[str]:
    """The bwrap command line: ``read_only`` {host path: sandbox path}, ``course`` at /course."""
    argv = ["bwrap", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/run"]
    argv += ["--size", str(limits.shm_mb * 2**20), "--tmpfs", "/dev/shm"]
    argv += ["--ro-bind", "/usr", "/usr"]  # after the tmpfs mounts: a bind under /tmp stays visible
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        host = Path("/") / name
        if host.is_symlink():
            argv += ["--symlink", os.readlink(host), f"/{name}"]
        elif host.is_dir():
            argv += ["--ro-bind", str(host), f"/{name}"]
    for name in ETC:
        if (Path("/etc") / name).exists():
            argv += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
    for host, inside in read_only.items():
        argv += ["--ro-bind", host, inside]
    argv += ["--bind", str(course), "/course", "--chdir", "/course"]
    argv += ["--unshare-all", "--unshare-user", "--disable-userns"]  # no network, no new userns
    argv += ["--uid", "1000", "--gid", "1000"]
    argv += ["--new-session", "--die-with-parent", "--as-pid-1", "--cap-drop", "ALL", "--clearenv"]
    for key, value in env.items():
        argv += ["--setenv", key, value]
    return argv + ["--", *command]


def systemd_argv(limits: Limits, unit: str) -> list[str]:
    """The systemd-run prefix that puts a command in a capped transient scope (cgroup v2)."""
    argv = ["systemd-run", "--user", "--scope", "--quiet", f"--unit={unit}"]
    argv += ["-p", f"MemoryMax={limits.memory_mb}M", "-p", "MemorySwapMax=0"]
    argv += ["-p", f"TasksMax={limits.tasks}", "-p", f"CPUQuota={round(limits.cpus * 100)}%"]
    return argv + ["--"]


class Cgroup1:
    """A memory, a pids and (if mounted) a cpu cgroup (v1) of our own for one submission."""

    def __init__(self, limits: Limits) -> None:
        name = f"nst-grade-{uuid.uuid4().hex[:12]}"
        self.memory = _cgroup1_parent("memory") / name
        self.pids = _cgroup1_parent("pids") / name
        cpu = _cgroup1_parent("cpu")
        self.cpu = cpu / name if cpu else None  # optional: the limits above are not
        for folder in self.folders:
            folder.mkdir()
        if self.cpu:
            period = int((self.cpu.parent / "cpu.cfs_period_us").read_text())
            (self.cpu / "cpu.cfs_quota_us").write_text(str(int(period * limits.cpus)))
        limit = str(limits.memory_mb * 2**20)
        (self.memory / "memory.limit_in_bytes").write_text(limit)
        swap = self.memory / "memory.memsw.limit_in_bytes"
        if swap.exists():  # memory + swap: no escape into swap
            swap.write_text(limit)
        (self.pids / "pids.max").write_text(str(limits.tasks))

    @property
    def folders(self) -> list[Path]:
        """The cgroup folders: memory, pids and, where available, cpu."""
        return [f for f in (self.memory, self.pids, self.cpu) if f is not None]

    def enter(self) -> None:
        """Move the calling process (a child about to exec) into our cgroups."""
        for folder in self.folders:
            (folder / "cgroup.procs").write_text(str(os.getpid()))

    def oom_killed(self) -> bool:
        """Whether the kernel killed a process here for lack of memory."""
        try:
            lines = (self.memory / "memory.oom_control").read_text().splitlines()
        except OSError:
            return False
        counts = dict(line.split() for line in lines if len(line.split()) == 2)
        return int(counts.get("oom_kill", "0")) > 0

    def kill_all(self) -> int:
        """SIGKILL every process still in the cgroups, until none is left; how many there were."""
        killed = 0
        for _ in range(100):
            pids = set()
            for folder in self.folders:
                try:
                    pids |= {int(p) for p in (folder / "cgroup.procs").read_text().split()}
                except OSError:
                    pass
            if not pids:
                return killed
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed += 1
                except ProcessLookupError:
                    pass
            time.sleep(0.05)
        return killed

    def remove(self) -> None:
        """Kill what is left and remove the cgroups."""
        self.kill_all()
        for folder in self.folders:
            for _ in range(50):
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)


@dataclass
class Outcome:
    """How a sandboxed command ended."""

    returncode: int
    wall_exceeded: bool
    out_of_memory: bool
    seconds: float


def run(
    argv: list[str], limits: Limits, wall: int, log: Path, how: str, cwd: Path | None = None
) -> Outcome:
    """Run a command under ``how`` ("cgroup1", "systemd", "unsafe": rlimits only), ``wall`` s."""
    group = Cgroup1(limits) if how == "cgroup1" else None
    if how == "systemd":
        argv = systemd_argv(limits, f"nst-grade-{uuid.uuid4().hex[:12]}") + argv

    def before_exec() -> None:  # in the child, between fork and exec
        if group is not None:
            group.enter()
        resource_limits(limits)

    start = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=before_exec,
            start_new_session=True,
            cwd=cwd,
        )
        try:
            proc.wait(timeout=wall)
            exceeded = False
        except subprocess.TimeoutExpired:
            exceeded = True
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # bwrap; its PID namespace dies with it
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait()
    oom = group.oom_killed() if group else False
    if group is not None:
        group.remove()
    return Outcome(proc.returncode, exceeded, oom, time.monotonic() - start)


def resource_limits(limits: Limits) -> None:
    """Per-process limits: private data memory, the largest file written, no core dumps."""
    import resource

    if limits.data_mb > 0:  # torch reserves 3 GB of address space it never uses: not RLIMIT_AS
        data = limits.data_mb * 2**20
        resource.setrlimit(resource.RLIMIT_DATA, (data, data))
    fsize = limits.file_mb * 2**20
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


if __name__ == "__main__":  # python -m tools.sandbox: can this machine sandbox?
    try:
        print(f"sandbox: bubblewrap with {mode()} limits")
    except SandboxUnavailable as err:
        print(f"no sandbox: {err}", file=sys.stderr)
        sys.exit(1)
