"""Fault injection for the crash tests: a training that kills itself at a chosen event, in a process of its own.

A *fault* is ``"EVENT:N[:ACTION]"``: at the N-th EVENT of the process (counted from 1), do ACTION.

events  save      the N-th ``torch.save`` (every checkpoint write: best, epoch{N}, last, and the final strips);
                  kill / int come once the temp file holds the whole checkpoint, before its rename
        replace   just after the N-th rename of a finished .pt / .csv file into place (utils.atomic)
        csv       during the N-th results.csv write (the table is in memory, the temp file open)
        yaml      the N-th write of a run's yaml file (hyp.yaml, opt.yaml, kd.yaml, kd_balance.yaml)
        batch     the start of the N-th training batch (on_train_batch_start)
        optstep   the end of the N-th training batch, after its optimiser step (on_train_batch_end)
        val       the N-th NMS call of validation: inside the N-th validation when each has one batch (the
                  final validation of best.pt counts too)
        strip     the start of the N-th strip_optimizer
actions kill      SIGKILL (the default): nothing runs after it, as in a power loss or the OOM killer
        int       SIGINT: Ctrl-C, Python's KeyboardInterrupt
        torn      (save, csv, yaml) write half of the bytes into the temp file, then SIGKILL
        full      (save, csv, yaml) write half of the bytes, then raise OSError(ENOSPC): a full disk

Nothing here is part of the program: the patches are applied inside the child process only.

``FaultServer`` runs jobs in children forked from one server process that has already imported torch, train.py and
train_kd.py (an import costs seconds, a fork milliseconds). The server is a fresh interpreter started by the tests,
so the children inherit no threads or locks of pytest. Protocol: one JSON job per line on its stdin,
``{"script": "train" | "train_kd", "argv": [...], "fault": str | null, "log": path}``, run as the command line
``python <script>.py <argv>`` would run; one JSON reply per line, ``{"exit": exit code, or -signal when killed}``;
the child's output goes to ``log``.
"""
from __future__ import annotations

import errno
import io
import json
import os
import runpy
import signal
import subprocess
import sys
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIGNALS = {"kill": signal.SIGKILL, "int": signal.SIGINT, "torn": signal.SIGKILL}


def parse(fault: str) -> tuple[str, int, str]:
    event, n, *action = fault.split(":")
    return event, int(n), (action or ["kill"])[0]


class Trigger:
    """Counts one event; ``hit()`` is True at the N-th."""

    def __init__(self, fault: str):
        self.event, self.n, self.action = parse(fault)
        self.count = 0

    def hit(self, event: str) -> bool:
        if event != self.event:
            return False
        self.count += 1
        return self.count == self.n

    def fire(self, f=None, data: bytes = b"") -> None:
        """Do the action; ``f``/``data``: the temp file being written and its full contents (torn, full)."""
        if self.action in ("torn", "full"):
            f.write(data[: len(data) // 2])
            f.flush()
            os.fsync(f.fileno())
            if self.action == "full":
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        os.kill(os.getpid(), SIGNALS[self.action])


def install(fault: str) -> None:
    """Patch torch.save, the atomic writer, NMS, strip_optimizer and the callback runner for ``fault``."""
    import torch

    from engine import checkpointing
    from utils import atomic, nms
    from utils.callbacks import Callbacks

    trigger = Trigger(fault)
    real_save, real_write, real_replace = torch.save, atomic.write_atomic, os.replace
    real_nms, real_strip, real_callbacks = nms.non_max_suppression, checkpointing.strip_optimizer, Callbacks.run

    def save(obj, f, *args, **kwargs):
        if not trigger.hit("save"):
            return real_save(obj, f, *args, **kwargs)
        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        if trigger.action in ("torn", "full"):
            trigger.fire(f, buffer.getvalue())
        f.write(buffer.getvalue())
        trigger.fire()  # the file is complete, not yet renamed

    def write_atomic(path, write):
        name = Path(path).name
        event = "csv" if name == "results.csv" else "yaml" if name.endswith(".yaml") else None
        if event is None or not trigger.hit(event):
            return real_write(path, write)

        def torn(f):
            buffer = io.BytesIO()
            write(buffer)
            trigger.fire(f, buffer.getvalue())
        return real_write(path, torn)

    def replace(src, dst):
        real_replace(src, dst)
        if str(dst).endswith((".pt", ".csv")) and trigger.hit("replace"):
            trigger.fire()

    def counted(event, real):
        def wrapper(*args, **kwargs):
            if trigger.hit(event):
                trigger.fire()
            return real(*args, **kwargs)
        return wrapper

    torch.save, atomic.write_atomic, os.replace = save, write_atomic, replace
    nms.non_max_suppression = counted("val", real_nms)
    checkpointing.strip_optimizer = counted("strip", real_strip)

    def run_callbacks(self, hook, *args, **kwargs):
        if trigger.hit({"on_train_batch_start": "batch", "on_train_batch_end": "optstep"}.get(hook, "")):
            trigger.fire()
        return real_callbacks(self, hook, *args, **kwargs)

    Callbacks.run = run_callbacks


def _child(job: dict) -> None:
    """Run one job in this (forked) process as ``python <script>.py <argv>`` would (its ``__main__`` block: the
    CLI's own error lines), then leave without running the server's clean-ups."""
    code = 1
    try:
        fd = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.alarm(300)  # a hung child dies (SIGALRM: exit -14) instead of hanging the tests
        if job.get("fault"):
            install(job["fault"])
        script = str(ROOT / f"{job['script']}.py")
        sys.argv = [script, *job["argv"]]
        runpy.run_path(script, run_name="__main__")
        code = 0
    except SystemExit as e:  # sys.exit("ERROR: ...") prints its message, as the interpreter would
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:  # noqa: BLE001 - reported through the log and the exit code
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def serve() -> None:
    """The server loop (``python -m tests.faults``): fork a child per job line, reply with its exit status."""
    import torch

    import train  # noqa: F401 - imported once here, inherited by every child
    import train_kd  # noqa: F401

    torch.set_num_threads(1)
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # stray prints of the server stay off the reply channel
    for line in sys.stdin:
        job = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(job)
        _, status = os.waitpid(pid, 0)
        replies.write(json.dumps({"exit": os.waitstatus_to_exitcode(status)}) + "\n")


class FaultServer:
    """Client of ``serve`` (a context manager): ``run(script, argv, fault, log) -> exit status``."""

    def __init__(self, env: dict | None = None):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **(env or {})}
        self.process = subprocess.Popen([sys.executable, "-m", "tests.faults"], cwd=ROOT, env=env, text=True,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def run(self, script: str, argv: list[str], fault: str | None, log: Path) -> int:
        self.process.stdin.write(json.dumps({"script": script, "argv": argv, "fault": fault, "log": str(log)}) + "\n")
        self.process.stdin.flush()
        reply = self.process.stdout.readline()
        if not reply:
            raise RuntimeError(f"the fault server died (exit {self.process.wait()})")
        return json.loads(reply)["exit"]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.process.stdin.close()
        self.process.wait(timeout=30)


if __name__ == "__main__":
    serve()
