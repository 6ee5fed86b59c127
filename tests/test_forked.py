"""A command forked with its imports done (forked.py) ends as a fresh interpreter does."""

from __future__ import annotations

import os
import subprocess
import sys

import forked
import pytest

pytestmark = [
    pytest.mark.noserver,
    pytest.mark.skipif(not forked.ENABLED, reason="TEST_FORKED_COMMANDS=0: nothing is forked"),
]

SCRIPT = r"""
import atexit, os, signal, sys, threading, time
print("argv", sys.argv[1:], "path0", sys.path[0] == os.getcwd() or sys.path[0])
print("env", sorted(k for k in os.environ if k != "LC_CTYPE"), os.getcwd())  # LC_CTYPE: PEP 538
print("handlers", signal.getsignal(signal.SIGINT) is signal.default_int_handler,
      signal.getsignal(signal.SIGTERM) == signal.SIG_DFL)
sys.stderr.write("to stderr\n")
atexit.register(lambda: print("atexit ran"))
threading.Thread(target=lambda: (time.sleep(0.2), print("thread ended"))).start()
how = sys.argv[1]
if how == "exit":
    sys.exit(int(sys.argv[2]))
if how == "message":
    sys.exit("a message")
if how == "raise":
    raise ValueError("boom")
if how == "_exit":
    sys.stdout.flush()
    os._exit(7)
if how == "kill":
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)
"""


@pytest.mark.parametrize("how", [["exit", "0"], ["exit", "3"], ["message"], ["raise"],
                                 ["_exit"], ["kill"]])  # fmt: skip
def test_a_forked_command_ends_as_a_fresh_interpreter_does(tmp_path, how):
    (tmp_path / "package").mkdir()
    (tmp_path / "package" / "__init__.py").write_text("")
    (tmp_path / "package" / "__main__.py").write_text(SCRIPT)
    env = {"PATH": os.environ["PATH"], "FORKED_ONE": "1"}  # and nothing of this process's
    args = [sys.executable, "-m", "package", *how]
    assert forked.what_runs(args) == ("module", "package")
    fresh = subprocess.run(args, env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=60)  # fmt: skip
    fork = forked.run(args, env, tmp_path, 60)
    assert fork.returncode == fresh.returncode
    assert lines(fork.stdout) == lines(fresh.stdout), fork.stdout


def lines(output: str) -> list[str]:
    """The output's lines in order of text, less a traceback's frames (the fork's runs
    through runpy.run_module and forked.py, a fresh one's through runpy's main)."""
    return sorted(line for line in output.splitlines() if not line.startswith("  "))


def test_a_script_gets_its_own_folder_first_on_the_path(tmp_path):
    (tmp_path / "tool").mkdir()
    (tmp_path / "tool" / "helper_mod.py").write_text("NAME = 'beside the script'\n")
    (tmp_path / "tool" / "main.py").write_text("import helper_mod\nprint(helper_mod.NAME)\n")
    args = [sys.executable, str(tmp_path / "tool" / "main.py")]
    assert forked.what_runs(args) == ("path", args[1])
    run = forked.run(args, {"PATH": os.environ["PATH"]}, tmp_path, 60)
    assert (run.returncode, run.stdout) == (0, "beside the script\n")


def test_a_command_over_its_time_is_killed_as_subprocess_does(tmp_path):
    (tmp_path / "slow.py").write_text("import time\nprint('started', flush=True)\ntime.sleep(60)\n")
    with pytest.raises(subprocess.TimeoutExpired) as caught:
        forked.run([sys.executable, str(tmp_path / "slow.py")], {}, tmp_path, 2)
    assert "started" in caught.value.output
