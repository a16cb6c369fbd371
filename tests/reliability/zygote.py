"""A pre-warmed parent that forks worker processes for the kill -9 and concurrency tests.

Importing the SDK costs ~1.7 s per process; forking this already-warm parent makes each
worker start in milliseconds, so a test can kill many real processes. The workers run the
real library and CLI (nothing here changes their behaviour); they open every database
connection and HTTP client themselves, after the fork.

Protocol on stdin/stdout, one JSON object a line:
  {"cmd": "fork", "job": "ask_loop"|"cli_ask"|"drain", "env": {...}, "out": path, ...}
      -> {"pid": N}
  {"cmd": "wait", "pid": N} -> {"pid": N, "signal": S | null, "code": C | null}
  {"cmd": "quit"}
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import anthropic  # noqa: F401 - warm the import the workers would pay for
import typer  # noqa: F401

import tars_opt.cache.stage  # noqa: F401
import tars_opt.cli.main  # noqa: F401
import tars_opt.context.prune  # noqa: F401
import tars_opt.context.tools  # noqa: F401
import tars_opt.defer.stage  # noqa: F401
import tars_opt.drain.runner  # noqa: F401
import tars_opt.embeddings.model  # noqa: F401
import tars_opt.routing.stage  # noqa: F401
from tars_opt import Request, open_app
from tars_opt.errors import BackendError, BudgetExceeded


def _warm() -> None:
    """Import what the first call imports lazily (no thread or connection is made here)."""
    import anthropic.resources.messages  # noqa: F401
    import onnxruntime  # noqa: F401
    import tokenizers  # noqa: F401


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def ask_loop(spec: dict[str, Any]) -> None:
    """Library asks in a loop; each answer's request_id is printed once it is received."""
    app = open_app(overrides=spec.get("overrides"))
    opt = app.optimizer()
    for i in range(int(spec.get("n", 1000))):
        req = Request.from_prompt(f"{spec['tag']} question {i}: name a prime above {i}")
        stream = i % 3 == 1
        try:
            reply = opt.ask(req, on_text=(lambda _t: None) if stream else None)
        except BackendError as exc:
            print(json.dumps({"failed": req.request_id, "error": str(exc)}), flush=True)
            continue
        except BudgetExceeded:
            print(json.dumps({"refused": req.request_id}), flush=True)
            continue
        print(json.dumps({"answered": reply.request_id, "source": reply.source}), flush=True)


def cli_ask(spec: dict[str, Any]) -> None:
    """`tars-opt ask --json` runs in a loop, each printing to its own numbered file: `n`
    times at most, stopping after `seconds` once `min_n` are done (a loaded machine still
    makes the run it was sized for)."""
    from tars_opt.cli.main import app

    deadline = time.monotonic() + float(spec.get("seconds", 1e9))
    for i in range(int(spec.get("n", 1000))):
        if i >= int(spec.get("min_n", 0)) and time.monotonic() > deadline:
            break
        out = os.open(f"{spec['out']}.{i}", os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        os.dup2(out, 1)
        os.close(out)
        args = ["ask", "--json", *spec.get("args", []), f"{spec['tag']} cli question {i}"]
        try:
            app(args, prog_name="tars-opt")
        except SystemExit as exc:
            sys.stderr.write(f"exit {exc.code}\n")
        sys.stdout.flush()


def drain(spec: dict[str, Any]) -> None:
    """One `drain` that submits and waits for its batches."""
    from tars_opt.cli.main import app

    try:
        app(["drain", "--now", *spec.get("args", [])], prog_name="tars-opt")
    except SystemExit as exc:
        sys.stderr.write(f"exit {exc.code}\n")


def drain_loop(spec: dict[str, Any]) -> None:
    """`drain --now` again and again for `seconds`."""
    from tars_opt.cli.main import app

    deadline = time.monotonic() + float(spec["seconds"])
    while time.monotonic() < deadline:
        try:
            app(["drain", "--now", *spec.get("args", [])], prog_name="tars-opt")
        except SystemExit as exc:
            sys.stderr.write(f"exit {exc.code}\n")
        time.sleep(0.2)


JOBS = {"ask_loop": ask_loop, "cli_ask": cli_ask, "drain": drain, "drain_loop": drain_loop}


def _child(spec: dict[str, Any]) -> None:
    os.environ.update(spec.get("env", {}))
    os.chdir(spec.get("cwd", os.getcwd()))
    for fd, path in ((1, spec["out"]), (2, spec.get("err", spec["out"] + ".err"))):
        handle = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
        os.dup2(handle, fd)
        os.close(handle)
    sys.stdin.close()
    JOBS[spec["job"]](spec)
    sys.stdout.flush()
    sys.stderr.flush()


def main() -> None:
    _warm()
    _emit({"ready": True})
    for line in sys.stdin:
        msg = json.loads(line)
        if msg["cmd"] == "quit":
            break
        if msg["cmd"] == "fork":
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    _child(msg)
                except BaseException as exc:  # report, never fall back into the parent loop
                    code = 70
                    Path(msg["out"] + ".crash").write_text(repr(exc))
                os._exit(code)
            _emit({"pid": pid})
        elif msg["cmd"] == "wait":
            _, status = os.waitpid(int(msg["pid"]), 0)
            _emit(
                {
                    "pid": msg["pid"],
                    "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
                    "code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
                }
            )


if __name__ == "__main__":
    main()
