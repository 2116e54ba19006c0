"""The code sandbox: every limit and refusal is proven by running code that tries to break it."""

from __future__ import annotations

import os
import socket
import tempfile
import time
from pathlib import Path

import anyio
import pytest

from agent.critics.sandbox import SandboxLimits, SandboxResult, run_python
from agent.errors import ConfigError

pytestmark = pytest.mark.anyio


def refused(result: SandboxResult, message: str = "sandbox:") -> bool:
    """The code failed with the sandbox's refusal (not a timeout or a signal)."""
    return result.exit_code == 1 and result.killed_by is None and message in result.stderr


async def test_normal_code_returns_its_output() -> None:
    result = await run_python("import math\nprint(math.comb(10, 3))\nprint('done')")
    assert result.ok and result.exit_code == 0 and not result.timed_out and result.killed_by is None
    assert result.stdout == "120\ndone\n" and result.stderr == ""
    assert not result.truncated and result.seconds > 0


async def test_errors_and_exit_codes_are_reported() -> None:
    failed = await run_python("x = 1 / 0")
    assert failed.exit_code == 1 and "ZeroDivisionError" in failed.stderr and not failed.ok
    assert (await run_python("raise SystemExit(3)")).exit_code == 3


async def test_sympy_is_importable() -> None:
    result = await run_python("import sympy\nx = sympy.symbols('x')\nprint(sympy.solve(x**2 - 4, x))")
    assert result.stdout == "[-2, 2]\n", result.stderr


async def test_wall_time_limit_kills_a_sleeping_process() -> None:
    start = time.perf_counter()
    result = await run_python("import time\ntime.sleep(60)", limits=SandboxLimits(wall_seconds=1))
    assert result.timed_out and result.killed_by == "wall" and result.exit_code == -9
    assert time.perf_counter() - start < 5


async def test_cpu_limit_kills_an_infinite_loop() -> None:
    limits = SandboxLimits(cpu_seconds=1, wall_seconds=20)
    result = await run_python("while True:\n    pass", limits=limits)
    assert result.killed_by == "cpu" and not result.timed_out and result.exit_code < 0
    assert result.seconds < 10


async def test_memory_limit_refuses_two_gigabytes() -> None:
    result = await run_python("x = bytearray(2 * 1024**3)\nprint('allocated')")
    assert result.exit_code != 0 and "MemoryError" in result.stderr and "allocated" not in result.stdout


async def test_file_size_limit_stops_a_100_mb_file() -> None:
    code = (
        "import os\nf = open('big', 'wb')\ntry:\n    for _ in range(100):\n        f.write(bytes(1 << 20))\n"
        "        f.flush()\nfinally:\n    print(os.path.getsize('big'))"
    )
    result = await run_python(code, limits=SandboxLimits(file_size_bytes=8 << 20))
    assert result.exit_code == 1 and "File too large" in result.stderr
    assert int(result.stdout) <= 8 << 20


async def test_no_connection_to_a_listening_local_socket() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        port = listener.getsockname()[1]
        code = (
            f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\nprint('connected')"
        )
        result = await run_python(code)
        assert result.exit_code != 0 and "connected" not in result.stdout
        with pytest.raises(BlockingIOError):
            listener.accept()  # nothing ever reached the listener
    raw = await run_python(f"import socket\nsocket.socket().connect(('127.0.0.1', {port}))")
    assert refused(raw, "socket")


@pytest.mark.parametrize(
    "code",
    [
        "import subprocess\nsubprocess.run(['echo', 'x'])",
        "import os\nos.system('echo x')",
        "import os\nos.fork()",
        "import os\nos.execv('/bin/echo', ['echo', 'x'])",
        "import os\nos.posix_spawn('/bin/echo', ['echo', 'x'], {})",
        "import _posixsubprocess\n_posixsubprocess.fork_exec()",
        "import os\nos.kill(os.getppid(), 0)",  # signal 0 only checks: harmless if it got through
    ],
)
async def test_no_processes_and_no_signals(code: str) -> None:
    result = await run_python(code)
    assert refused(result) and "x" not in result.stdout


@pytest.mark.parametrize(
    "code",
    [
        "import _ctypes",
        "import ctypes\nctypes.CDLL(None)",
        "import gc\ngc.get_objects()",
        "import sys\nsys.settrace(None)",
        "import resource\nresource.setrlimit(resource.RLIMIT_CPU, (100, 100))",
    ],
)
async def test_escape_hatches_are_closed(code: str) -> None:
    result = await run_python(code)
    assert result.exit_code == 1 and ("sandbox:" in result.stderr or "AttributeError" in result.stderr)


async def test_no_writes_outside_the_directory(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    attempts = [
        f"open({str(outside)!r}, 'w').write('x')",
        f"import os\nos.open({str(outside)!r}, os.O_WRONLY | os.O_CREAT)",
        f"import os\nos.symlink({str(outside)!r}, 'link')\nopen('link', 'w').write('x')",
        f"import os\nos.rename('main.py', {str(outside)!r})",
        f"import os\nos.mkdir({str(tmp_path / 'made')!r})",
        f"import os\nfd = os.open({str(tmp_path)!r}, os.O_RDONLY)\nos.open('x', os.O_WRONLY, dir_fd=fd)",
    ]
    for code in attempts:
        assert refused(await run_python(code)), code
    assert [p async for p in anyio.Path(tmp_path).iterdir()] == []


async def test_no_reads_outside_the_directory_and_python(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("token")
    result = await run_python(f"print(open({str(secret)!r}).read())")
    assert refused(result) and "token" not in result.stdout


async def test_writes_inside_the_directory_work_and_the_directory_is_removed() -> None:
    code = (
        "import os, pathlib, tempfile\npathlib.Path('a.txt').write_text('hi')\nos.makedirs('d/e')\n"
        "os.chmod('d', 0)\ntempfile.mkstemp()\nprint(open('a.txt').read())\nprint(os.getcwd())"
    )
    result = await run_python(code)
    assert result.ok, result.stderr
    greeting, workdir = result.stdout.split()
    assert greeting == "hi" and os.path.basename(workdir).startswith("treeloop-sandbox-")
    assert not await anyio.Path(workdir).exists()


async def test_the_directory_is_removed_after_a_timeout_and_on_cancellation() -> None:
    def leftovers() -> set[str]:
        return {p for p in os.listdir(tempfile.gettempdir()) if p.startswith("treeloop-sandbox-")}

    before = leftovers()
    await run_python("import time\ntime.sleep(60)", limits=SandboxLimits(wall_seconds=0.5))
    start = time.perf_counter()
    with anyio.move_on_after(0.5):
        await run_python("import time\ntime.sleep(60)")
    assert time.perf_counter() - start < 3
    assert leftovers() <= before


async def test_stdout_is_truncated_and_the_environment_is_empty() -> None:
    big = await run_python("print('x' * 1_000_000)", limits=SandboxLimits(max_output_bytes=1000))
    assert big.ok and big.truncated and big.stdout == "x" * 1000
    env = await run_python("import os\nprint(sorted(os.environ))\ninput()")
    assert env.stdout == "['LANG', 'PATH']\n" and "EOFError" in env.stderr  # stdin is empty


async def test_runs_do_not_block_the_event_loop() -> None:
    start = time.perf_counter()
    results: list[SandboxResult] = []

    async def one() -> None:
        results.append(await run_python("import time\ntime.sleep(0.5)\nprint('ok')"))

    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(one)
    assert [r.stdout for r in results] == ["ok\n"] * 4
    assert time.perf_counter() - start < 1.8  # concurrent, not 4 x 0.5 s in a row


async def test_optional_layers_can_be_switched_off() -> None:
    limits = SandboxLimits(network_namespace=False, drop_privileges=False, site_packages=False)
    result = await run_python("import sympy", limits=limits)
    assert not result.network_isolated and not result.privileges_dropped
    assert "ModuleNotFoundError" in result.stderr


def test_limits_are_validated() -> None:
    for bad in ({"wall_seconds": 0}, {"cpu_seconds": 0}, {"memory_bytes": -1}, {"max_processes": -1}):
        with pytest.raises(ConfigError):
            SandboxLimits(**bad)  # type: ignore[arg-type]


def test_public_names_exist() -> None:
    import agent.critics.sandbox as sandbox

    assert all(hasattr(sandbox, name) for name in sandbox.__all__)
