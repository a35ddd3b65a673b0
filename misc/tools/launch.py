"""Start a multi-worker training run on this machine: N worker processes on free 127.0.0.1 ports.

The way to try `MultiWorkerMirroredStrategy` without a cluster (`make train-stage1 WORKERS=2`): it
runs the given training command N times, each with its own `TF_CONFIG` naming the same N workers
on 127.0.0.1 and its own task index, exactly as a cluster scheduler would start one command per
machine. Worker 0 is the chief: its output is shown as it comes, and only it writes the run folder.
The other workers' output is kept in memory and shown if one of them fails. When a worker exits
with an error, the launcher stops the others (they would otherwise wait for it) and exits with the
first failure's status; on Ctrl-C it stops them all.

    python -m misc.tools.launch --workers 2 -- stageI/run_exp.py --cfg stageI/cfg/shapes.yml
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Callable, Sequence

from misc.cli import run_cli
from misc.errors import StackGANError

# Lines of a failed worker's output shown.
TAIL_LINES = 20


def free_ports(count: int) -> list[int]:
    """`count` TCP ports of 127.0.0.1 that were free a moment ago (bound to port 0, then released)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def tf_config(ports: Sequence[int], index: int) -> str:
    """The `TF_CONFIG` of worker `index` of a cluster of 127.0.0.1 workers."""
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
                       "task": {"type": "worker", "index": index}})


def _collect(stream, lines: list[str]) -> None:
    for line in iter(stream.readline, ""):
        lines.append(line)


def launch(command: Sequence[str], workers: int, print_fn: Callable[[str], None] = print) -> int:
    """Run `command` (a Python script or `-m module` and its arguments) as `workers` workers.

    Returns:
      0 when every worker succeeded, else the first failing worker's exit status.
    """
    if workers < 1:
        raise StackGANError(f"--workers must be at least 1, got {workers}")
    if not command:
        raise StackGANError("give the training command after --, e.g. -- stageI/run_exp.py --cfg stageI/cfg/shapes.yml")
    ports = free_ports(workers)
    print_fn(f"launching {workers} workers on 127.0.0.1:{','.join(map(str, ports))} (worker 0 is the chief)")
    procs, outputs, readers = [], [], []
    for index in range(workers):
        env = dict(os.environ, TF_CONFIG=tf_config(ports, index))
        chief = index == 0
        proc = subprocess.Popen([sys.executable, *command], env=env, text=True,
                                stdout=None if chief else subprocess.PIPE,
                                stderr=None if chief else subprocess.STDOUT)
        procs.append(proc)
        outputs.append([])
        if not chief:
            reader = threading.Thread(target=_collect, args=(proc.stdout, outputs[-1]), daemon=True)
            reader.start()
            readers.append(reader)
    try:
        status = _wait(procs)
    except KeyboardInterrupt:
        _stop(procs)
        raise
    for reader in readers:
        reader.join(timeout=5)
    # The chief showed its own error; a worker's is shown when the chief's output does not explain the stop.
    if procs[0].returncode == 0 or not status:
        return status
    for index, proc in enumerate(procs[1:], start=1):
        if proc.returncode and procs[0].returncode in (None, -signal.SIGTERM) and outputs[index]:
            print_fn(f"worker {index} exited with status {proc.returncode}; its last lines:")
            print_fn("".join(outputs[index][-TAIL_LINES:]).rstrip())
    return status


def _wait(procs: list[subprocess.Popen], grace: float = 15.0) -> int:
    """Wait for every worker; once one fails, give the others `grace` seconds to stop by themselves
    (they notice a missing peer and say so), then stop them. Returns the first failure's status."""
    first_failure, deadline = 0, None
    while any(proc.poll() is None for proc in procs):
        failed = [proc.returncode for proc in procs if proc.returncode not in (None, 0)]
        if failed and deadline is None:
            first_failure, deadline = failed[0], time.monotonic() + grace
        if deadline is not None and time.monotonic() > deadline:
            _stop(procs)
        time.sleep(0.2)
    return first_failure or next((proc.returncode for proc in procs if proc.returncode), 0)


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    for proc in procs:
        try:
            proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            proc.kill()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the first failing worker's exit status, or 0."""
    parser = argparse.ArgumentParser(
        prog="python -m misc.tools.launch",
        description="Run a training command as N workers of MultiWorkerMirroredStrategy on this machine (127.0.0.1, "
                    "free ports): the way to try multi-worker training without a cluster. Worker 0 is the chief.",
        epilog="example:\n  python -m misc.tools.launch --workers 2 -- stageI/run_exp.py --cfg stageI/cfg/shapes.yml",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2, metavar="N", help="worker processes (default 2)")
    parser.add_argument("command", nargs=argparse.REMAINDER,
                        help="after --: the Python script or -m module to run, with its arguments")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    return launch(command, args.workers)


if __name__ == "__main__":
    run_cli(main)
