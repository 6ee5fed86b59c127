"""The commands tests run as a user would (`python -m alembic ...`, `python -m
neon_migrate.cli ...`, `python scripts/predeploy_check.py ...`), each in a new process forked
from one that has already imported Alembic, SQLAlchemy, psycopg2 and pydantic.

Each command is still a process of its own: the test's environment (all of it, and only
it), working directory, arguments, `sys.path` as `python -m` or `python script.py` sets
it, its own signal handlers, exit code and output (stdout and stderr merged, as a terminal
shows them); it runs its atexit handlers and waits for its threads as an interpreter does
at exit. What it does not pay is the interpreter's start-up and those imports: about half
a second of CPU each, a third of the suite's CPU on a 2-core machine.

The fork server is multiprocessing's, with the preloads the fleet's targets use
(neon_migrate.fleet.worker.PRELOAD: nothing of the harness that draws per-process state at
import). TEST_FORKED_COMMANDS=0 runs every command with a fresh interpreter instead, to tell
a difference the fork could make from a real one.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import json
import locale
import os
import runpy
import signal
import subprocess
import sys
import tempfile
import threading
import traceback
from pathlib import Path

ENABLED = os.environ.get("TEST_FORKED_COMMANDS", "1") != "0"
_EXIT = os._exit  # a revision under test may replace os._exit; the command's end must not
_DEFAULT_PATH: list[str] | None = None  # sys.path of `python -c` without PYTHONPATH, less ''


def _default_path() -> list[str]:
    global _DEFAULT_PATH
    if _DEFAULT_PATH is None:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        probe = subprocess.run(
            [sys.executable, "-c", "import json, sys; print(json.dumps(sys.path[1:]))"],
            env=env, capture_output=True, text=True, check=True, cwd="/",
        )  # fmt: skip
        _DEFAULT_PATH = json.loads(probe.stdout)
    return _DEFAULT_PATH


def _context():
    from neon_migrate.fleet.worker import context

    return context()


def what_runs(args: list[str]) -> tuple[str, str] | None:
    """("module", name) for `python -m name ...`, ("path", file) for `python file.py ...`;
    None for anything else (run as it is)."""
    if not ENABLED or len(args) < 2 or args[0] != sys.executable:
        return None
    if args[1] == "-m" and len(args) >= 3:
        return "module", args[2]
    if args[1].endswith(".py") and not args[1].startswith("-"):
        return "path", args[1]
    return None


def run(args: list[str], env: dict[str, str], cwd: Path | None, timeout: float):
    """subprocess.run(args, stdout=PIPE, stderr=STDOUT, text=True), forked when it can be."""
    kind = what_runs(args)
    if kind is None:
        return subprocess.run(args, env=env, cwd=cwd, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=timeout)  # fmt: skip
    directory = str(Path(cwd or os.getcwd()).resolve())
    with tempfile.NamedTemporaryFile(prefix="command-output-") as out:
        process = _context().Process(
            target=_child,
            args=(kind, args, dict(env), directory, out.name, _default_path()),
            daemon=False,
        )
        process.start()
        process.join(timeout)
        if process.exitcode is None:
            process.kill()
            process.join()
            output = Path(out.name).read_text(errors="replace")
            raise subprocess.TimeoutExpired(args, timeout, output=output)
        output = Path(out.name).read_bytes().decode(locale.getpreferredencoding(False))
    output = output.replace("\r\n", "\n").replace("\r", "\n")  # text=True's newlines
    return subprocess.CompletedProcess(args, process.exitcode, output, None)


def _child(kind, args, env, cwd, out, default_path) -> None:
    """In the forked process: become the command, run it, end as an interpreter would."""
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    fd = os.open(out, os.O_WRONLY)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))
    sys.stdout = io.TextIOWrapper(io.BufferedWriter(io.FileIO(1, "w", closefd=False)))
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), errors="backslashreplace",
                                  line_buffering=True, write_through=True)  # fmt: skip
    extra = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    first = cwd if kind[0] == "module" else str(Path(cwd, kind[1]).resolve().parent)
    sys.path[:] = [first, *extra, *default_path]
    code = 0
    try:
        if kind[0] == "module":
            sys.argv = [args[2], *args[3:]]  # run_module sets argv[0] to the module's file
            runpy.run_module(kind[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = [args[1], *args[2:]]
            runpy.run_path(kind[1], run_name="__main__")
    except SystemExit as exc:
        code = _exit_code(exc)
    except KeyboardInterrupt:
        traceback.print_exc()
        _flush()
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # as the interpreter ends: by SIGINT
        os.kill(os.getpid(), signal.SIGINT)
    except BaseException:
        sys.excepthook(*sys.exc_info())
        code = 1
    try:
        threading._shutdown()  # an interpreter's exit waits for its threads,
        atexit._run_exitfuncs()  # then runs its atexit handlers
    except SystemExit as exc:
        code = _exit_code(exc)
    _flush()
    _EXIT(code)


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code & 0xFF
    print(exc.code, file=sys.stderr)
    return 1


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed stream: nothing left to write
            stream.flush()
