"""Run model-written Python in a sandboxed child process, for critics that check code.

``run_python(code)`` runs the code as ``python -I -S -B -u`` (no user site, no PYTHON* variables,
no ``site``; this environment's site-packages go on ``sys.path`` so sympy imports, unless
``site_packages=False``) in a fresh temporary directory, deleted afterwards. Layers:

- rlimits: CPU seconds (SIGXCPU, SIGKILL a second later), address space (MemoryError), file size
  ("File too large"), processes (RLIMIT_NPROC; it does not bind root), no core dumps. The parent
  kills the child's process group at the wall-time limit. Environment: PATH and LANG only; stdin
  is /dev/null; stdout and stderr are cut at ``max_output_bytes`` each;
- a new network namespace (``unshare -n``, or ``unshare -r -n`` as a normal user) when a probe
  shows it works: no network at all, not even loopback;
- as root, a drop to uid/gid 65534 when a probe shows that nobody can still read the Python
  installation (not so under a 0700 ``/root``);
- an audit hook, installed before the code runs and impossible to remove, refusing: sockets;
  subprocess, ``os.system``, ``exec*``, ``fork``, ``posix_spawn``; signals to other processes;
  ``_ctypes`` and cffi (ctypes calls are not audited; ``import ctypes`` gets a stand-in with only
  ``c_long`` and ``sizeof``, which sympy needs); tracing, profiling, ``gc`` walks; raising rlimits;
  hard links; writing, creating, renaming, deleting, chmod-ing outside the directory; reading
  outside it and the Python installation; devices, pipes and sockets opened by path (but
  /dev/null, /dev/zero, /dev/urandom); ``os.open`` with a relative path; any ``dir_fd``. Paths are
  resolved through ``/proc/self/fd``, symlinks included.

NOT a security boundary against a determined attacker: no seccomp, no mount namespace, and the
hook sees only what Python audits. Known gaps: a path object whose ``__fspath__`` changes between
calls races the check; C extensions in site-packages that wrap system calls are not audited;
symlinks swapped inside the directory race the check; the Python installation is readable;
without the privilege drop only the hook stops forks as root; limits are per process and disk use
is capped per file only. Run code from strangers in a container or a VM.
``SandboxResult.network_isolated`` and ``privileges_dropped`` say which optional layers were on.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass

import anyio
from anyio.abc import ByteReceiveStream

from agent.errors import ConfigError

__all__ = ["NOBODY", "SandboxLimits", "SandboxResult", "run_python"]

NOBODY = 65534
"""The uid and gid a root parent drops the child to."""
_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


@dataclass(frozen=True, slots=True)
class SandboxLimits:
    """What one run may use. Below ~100 MB of address space, imports start to fail."""

    wall_seconds: float = 10.0
    cpu_seconds: int = 5
    memory_bytes: int = 1 << 30
    file_size_bytes: int = 16 << 20
    max_output_bytes: int = 64 << 10  # per stream
    max_processes: int = 0  # RLIMIT_NPROC; does not bind root
    # Optional layers, used where the machine allows them:
    network_namespace: bool = True
    drop_privileges: bool = True
    site_packages: bool = True  # the code may import what this environment has (sympy)

    def __post_init__(self) -> None:
        sizes = (self.cpu_seconds, self.memory_bytes, self.file_size_bytes, self.max_output_bytes)
        if not (self.wall_seconds > 0 and min(sizes) >= 1 and self.max_processes >= 0):
            raise ConfigError(f"sandbox limits must be positive (max_processes >= 0): {self}")


@dataclass(frozen=True, slots=True)
class SandboxResult:
    """What the code printed and how it ended.

    ``exit_code`` is negative for a signal (-9: killed). ``killed_by`` is "wall" (``timed_out``),
    "cpu" (SIGXCPU), "file_size" (SIGXFSZ), another fatal signal's name, or None when the process
    exited by itself. ``truncated``: stdout or stderr was cut at ``max_output_bytes``.
    """

    stdout: str
    stderr: str
    exit_code: int
    timed_out: bool
    killed_by: str | None
    seconds: float
    truncated: bool = False
    network_isolated: bool = False
    privileges_dropped: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


_Isolation = tuple[tuple[str, ...], int | None]  # the unshare command (or ()), the uid to drop to
_ISOLATION: dict[tuple[bool, bool, bool], _Isolation] = {}  # probed once per combination


async def run_python(code: str, *, limits: SandboxLimits = SandboxLimits()) -> SandboxResult:
    """Run ``code`` as a script in a sandboxed child; nothing the code does raises here.

    Cancelling the caller kills the child; its directory is removed either way."""
    if not sys.executable:
        raise ConfigError("the sandbox needs sys.executable to start a Python process")
    isolation = await _isolation(limits)
    workdir = await anyio.to_thread.run_sync(_prepare, code, isolation[1])
    try:
        return await _run(workdir, limits, isolation)
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(_remove, workdir)


async def _run(workdir: str, limits: SandboxLimits, isolation: _Isolation) -> SandboxResult:
    (wrapper, drop_to), (python, site) = isolation, _dirs(limits.site_packages)
    config = {
        "rlimits": {"CPU": (limits.cpu_seconds, limits.cpu_seconds + 1), "AS": limits.memory_bytes}
        | {"FSIZE": limits.file_size_bytes, "NPROC": limits.max_processes, "CORE": 0},
        "drop_to": drop_to,
        "site": site,
        "root": workdir,
        "readable": [workdir, *python, *site],
        "guard": _GUARD,
    }
    argv = [*wrapper, sys.executable, "-I", "-S", "-B", "-u", "-c", _BOOTSTRAP, json.dumps(config)]
    out, err = _Capture(limits.max_output_bytes), _Capture(limits.max_output_bytes)
    start, stdin = time.perf_counter(), subprocess.DEVNULL
    process = await anyio.open_process(argv, stdin=stdin, cwd=workdir, env=_ENV, start_new_session=True)
    try:
        with anyio.move_on_after(limits.wall_seconds) as scope:
            async with anyio.create_task_group() as tg:
                assert process.stdout is not None and process.stderr is not None
                tg.start_soon(out.drain, process.stdout)
                tg.start_soon(err.drain, process.stderr)
                await process.wait()
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)  # a new session: its pid is its group's id
        with anyio.CancelScope(shield=True):
            await process.wait()
            await process.aclose()
    code, timed_out = process.returncode or 0, scope.cancelled_caught
    killed_by = _killed_by(code, timed_out=timed_out)
    seconds, truncated = time.perf_counter() - start, out.truncated or err.truncated
    stdout, stderr = (c.data.decode("utf-8", errors="replace") for c in (out, err))
    layers = (bool(wrapper), drop_to is not None)
    return SandboxResult(stdout, stderr, code, timed_out, killed_by, seconds, truncated, *layers)


class _Capture:
    """Keeps the first ``limit`` bytes of a stream and reads (and drops) the rest."""

    def __init__(self, limit: int) -> None:
        self.limit, self.data, self.truncated = limit, bytearray(), False

    async def drain(self, stream: ByteReceiveStream) -> None:
        async for chunk in stream:
            room = self.limit - len(self.data)
            self.data += chunk[: max(room, 0)]
            self.truncated = self.truncated or len(chunk) > room


def _killed_by(code: int, *, timed_out: bool) -> str | None:
    if timed_out or code >= 0:
        return "wall" if timed_out else None
    named = {int(signal.SIGXCPU): "cpu", int(signal.SIGXFSZ): "file_size"}
    return named.get(-code) or (signal.Signals(-code).name if -code in signal.valid_signals() else None)


def _prepare(code: str, drop_to: int | None) -> str:
    workdir = os.path.realpath(tempfile.mkdtemp(prefix="treeloop-sandbox-"))
    with open(os.path.join(workdir, "main.py"), "w", encoding="utf-8") as f:
        f.write(code)
    if drop_to is not None:
        os.chown(workdir, drop_to, drop_to)
    return workdir


def _remove(workdir: str) -> None:
    def unlock_and_retry(func: object, path: str, _exc: object) -> None:
        os.chmod(os.path.dirname(path), 0o700)  # the code may have locked a directory
        func(path)  # type: ignore[operator]

    shutil.rmtree(workdir, onerror=unlock_and_retry)


def _dirs(site_packages: bool) -> tuple[list[str], list[str]]:
    """The Python installation's directories, and the site-packages ones when they are used."""
    paths = sysconfig.get_paths()
    python = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
    python += [paths["stdlib"], paths["platstdlib"]]
    site = [paths["purelib"], paths["platlib"]] if site_packages else []
    python, site = ([*dict.fromkeys(os.path.realpath(d) for d in dirs)] for dirs in (python, site))
    return python, site


async def _isolation(limits: SandboxLimits) -> _Isolation:
    """Which optional layers work on this machine (probed once per process)."""
    key = (limits.network_namespace, limits.drop_privileges, limits.site_packages)
    if key not in _ISOLATION:
        wrapper: tuple[str, ...] = ()
        if limits.network_namespace and shutil.which("unshare"):
            for candidate in (("unshare", "-n"), ("unshare", "-r", "-n")):
                if await _succeeds([*candidate, "true"]):
                    wrapper = candidate
                    break
        drop_to = None
        if limits.drop_privileges and os.geteuid() == 0:
            python, site = _dirs(limits.site_packages)
            probe = [*wrapper, sys.executable, "-I", "-S", "-c", _DROP_PROBE, json.dumps(python + site)]
            drop_to = NOBODY if await _succeeds(probe) else None
        _ISOLATION[key] = (wrapper, drop_to)
    return _ISOLATION[key]


async def _succeeds(command: list[str]) -> bool:
    with contextlib.suppress(OSError, TimeoutError), anyio.fail_after(30):
        return (await anyio.run_process(command, check=False, stdin=subprocess.DEVNULL)).returncode == 0
    return False


_DROP_PROBE = f"import json, os, sys\nos.setgroups([]); os.setgid({NOBODY}); os.setuid({NOBODY})\n"
_DROP_PROBE += "for d in json.loads(sys.argv[1]): os.listdir(d)\n"

# Runs first in the child (python -c): limits, privilege drop, stand-ins, the guard, the code.
_BOOTSTRAP = r"""import json, os, resource, struct, sys, types
cfg = json.loads(sys.argv[1])
for name, value in cfg["rlimits"].items():
    soft, hard = value if isinstance(value, list) else (value, value)
    cap = resource.getrlimit(getattr(resource, "RLIMIT_" + name))[1]
    if cap != resource.RLIM_INFINITY:
        soft, hard = min(soft, cap), min(hard, cap)
    resource.setrlimit(getattr(resource, "RLIMIT_" + name), (soft, hard))
if cfg["drop_to"] is not None:
    os.setgroups([]); os.setgid(cfg["drop_to"]); os.setuid(cfg["drop_to"])
sys.path.extend(cfg["site"])
import _posixsubprocess
def _no_processes(*args, **kwargs):
    raise PermissionError("sandbox: starting processes is not allowed")
_posixsubprocess.fork_exec = _no_processes
ctypes = types.ModuleType("ctypes", "sandbox stand-in: c_long and sizeof only (for sympy)")
ctypes.c_long = type("c_long", (), {})
ctypes.sizeof, sys.modules["ctypes"] = {ctypes.c_long: struct.calcsize("l")}.__getitem__, ctypes
with open("main.py", encoding="utf-8") as f:
    code = compile(f.read(), "main.py", "exec")
guard = {"__builtins__": dict(vars(__builtins__))}
exec(cfg["guard"], guard)
guard["install"](cfg["root"], tuple(cfg["readable"]))
del guard, cfg, f, json, resource, ctypes, struct, types
sys.argv = ["main.py"]
exec(code, {"__name__": "__main__", "__builtins__": __builtins__})
"""

# The audit hook, run in a namespace of its own with a private copy of the builtins. It keeps only
# immutable values and C functions captured before the code runs.
_GUARD = r'''def install(root, readable):
    import os, stat, sys
    from contextlib import suppress
    open_, close, readlink, fstat, fspath = os.open, os.close, os.readlink, os.fstat, os.fspath
    is_reg, is_dir, O_PATH, O_DIR = stat.S_ISREG, stat.S_ISDIR, os.O_PATH, os.O_DIRECTORY
    O_LINK = os.O_PATH | os.O_NOFOLLOW
    WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    DEVICES = frozenset(("/dev/null", "/dev/zero", "/dev/urandom"))
    DENY = frozenset("""os.system os.exec os.fork os.forkpty os.posix_spawn os.spawn subprocess.Popen
        os.kill os.killpg signal.pthread_kill sys.settrace sys.setprofile sys._current_frames
        sys._current_exceptions gc.get_objects gc.get_referrers gc.get_referents resource.setrlimit
        resource.prlimit os.link os.setxattr os.removexattr os.chflags os.lchflags""".split())
    DENY_IMPORTS = frozenset(("_ctypes", "cffi", "_cffi_backend", "_posixsubprocess"))
    PATHS = {  # event -> (indices of path arguments, indices of dir_fd arguments)
        "os.mkdir": ((0,), (2,)), "os.rmdir": ((0,), (1,)), "os.remove": ((0,), (1,)),
        "os.rename": ((0, 1), (2, 3)), "os.chmod": ((0,), (2,)), "os.chown": ((0,), (3,)),
        "os.utime": ((0,), (3,)), "os.truncate": ((0,), ()), "os.symlink": ((1,), (2,)),
    }

    def deny(what):
        raise PermissionError("sandbox: " + what + " is not allowed")

    def text(path):
        path = path if type(path) in (str, bytes) else fspath(path)
        path = path.decode("utf-8", "surrogateescape") if type(path) is bytes else path
        if type(path) is not str or "\0" in path:
            deny("this kind of path")
        return path

    def check(path, write):
        path, name, fd = text(path), "", -1
        try:
            fd = open_(path, O_PATH)
        except OSError:
            head, sep, name = path.rpartition("/")
            with suppress(OSError):
                name = close(open_(path, O_LINK)) or ""  # it exists: a dangling symlink
            if name in ("", ".", ".."):
                deny("access to " + path)
            try:
                fd = open_((head or "/") if sep else ".", O_PATH | O_DIR)
            except OSError:
                deny("access to " + path)
        try:
            mode = None if name else fstat(fd).st_mode
            real = readlink("/proc/self/fd/" + str(fd))
        finally:
            close(fd)
        real = real.rstrip("/") + "/" + name if name else real
        if real in DEVICES:
            return
        if mode is not None and not (is_reg(mode) or is_dir(mode)):
            deny("opening devices, pipes or sockets")
        for allowed in ((root,) if write else readable):
            if real == allowed or real.startswith(allowed + "/"):
                return
        deny(("writing " if write else "reading ") + real)

    def hook(event, args):
        if event == "open":
            path, mode, flags = args
            if (type(flags) is int and flags & O_PATH) or type(path) is int:
                return
            writing = (type(flags) is int and flags & WRITE) or (type(mode) is str and mode.strip("rbt"))
            if mode is None and not text(path).startswith("/"):
                deny("os.open with a relative path")
            check(path, bool(writing))
        elif event in PATHS:
            indices, dir_fds = PATHS[event]
            if any(args[i] not in (None, -1) for i in dir_fds):
                deny(event + " with dir_fd")
            for i in indices:
                if type(args[i]) is int:
                    deny(event + " on a file descriptor")
                check(args[i], True)
        elif event in ("os.listdir", "os.scandir"):
            if type(args[0]) is not int:
                check("." if args[0] is None else args[0], False)
        elif event == "import" and args[0] in DENY_IMPORTS:
            raise ImportError("sandbox: importing " + args[0] + " is not allowed")
        elif event in DENY or event.startswith(("socket.", "ctypes.")):
            deny(event)

    sys.addaudithook(hook)
'''
