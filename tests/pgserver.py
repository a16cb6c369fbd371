"""A throwaway PostgreSQL server for tests, CI and benchmarks: its own data folder, its
socket in that folder, a free loopback port, stopped and removed at the end.

initdb and pg_ctl refuse to run as root: as root they run as the `postgres` user on a
folder that user owns. Nothing here touches a server someone else started.

    python -m tests.pgserver start FOLDER [--no-fsync]   # prints the URL
    python -m tests.pgserver stop FOLDER
"""

from __future__ import annotations

import argparse
import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

SUPERUSER = "postgres"


class ServerUnavailable(RuntimeError):
    """No PostgreSQL binaries here, or the server would not start; the message says why."""


def bin_dir() -> Path | None:
    """The folder of initdb/pg_ctl: $PG_BIN, else the newest /usr/lib/postgresql/*/bin."""
    if os.environ.get("PG_BIN"):
        return Path(os.environ["PG_BIN"])
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4])
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_owner(argv: list[str]) -> list[str]:
    """Run as the postgres user when we are root (initdb and pg_ctl refuse root)."""
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", SUPERUSER, "--", *argv]


@dataclass(frozen=True)
class Server:
    folder: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/postgres"

    def url_for(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        stop(self.folder)


def start(folder: Path | None = None, *, fsync: bool = True, max_connections: int = 300) -> Server:
    """Make a cluster in `folder` (a new temporary one by default) and start it on a free
    loopback port; trust authentication for the superuser on loopback only."""
    bins = bin_dir()
    if bins is None or not (bins / "initdb").exists():
        raise ServerUnavailable(
            "PostgreSQL binaries not found (apt-get install postgresql, or set PG_BIN)"
        )
    folder = Path(folder or tempfile.mkdtemp(prefix="tars-pg-"))
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "data"
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam(SUPERUSER)
        except KeyError:
            raise ServerUnavailable(f"no {SUPERUSER} user to run PostgreSQL as") from None
        os.chown(folder, user.pw_uid, user.pw_gid)
    os.chmod(folder, 0o700)
    run = _run_checked
    if not data.exists():
        run(
            [
                str(bins / "initdb"),
                "-D",
                str(data),
                "-U",
                SUPERUSER,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ],  # fmt: skip
            "initdb",
        )
    port = _free_port()
    options = (
        f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 "
        f"-c max_connections={max_connections} -c fsync={'on' if fsync else 'off'} "
        f"-c synchronous_commit={'on' if fsync else 'off'} "
        f"-c full_page_writes={'on' if fsync else 'off'}"
    )
    run(
        [
            str(bins / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(folder / "server.log"),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        ],  # fmt: skip
        "pg_ctl start",
        log=folder / "server.log",
    )
    (folder / "port").write_text(str(port))
    return Server(folder, port)


def halt(server: Server) -> None:
    """Stop `server` (fast shutdown) and keep its folder: `resume` starts it again."""
    bins = bin_dir()
    assert bins is not None
    _run_checked(
        [str(bins / "pg_ctl"), "-D", str(server.folder / "data"), "-m", "fast", "-w", "stop"],
        "pg_ctl stop",
    )


def resume(server: Server) -> None:
    """Start a halted `server` again on its port (fsync off: for tests only)."""
    bins = bin_dir()
    assert bins is not None
    options = (
        f"-p {server.port} -k {server.folder} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off"
    )
    _run_checked(
        [str(bins / "pg_ctl"), "-D", str(server.folder / "data"), "-l",
         str(server.folder / "server.log"), "-o", options, "-w", "-t", "60", "start"],
        "pg_ctl start", log=server.folder / "server.log",
    )  # fmt: skip


def stop(folder: Path) -> None:
    """Stop the server of `folder` (fast shutdown) and remove the folder."""
    bins = bin_dir()
    data = Path(folder) / "data"
    if bins is not None and (data / "postmaster.pid").exists():
        subprocess.run(
            _as_owner([str(bins / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
            capture_output=True,
            check=False,
            timeout=120,
        )
    shutil.rmtree(folder, ignore_errors=True)


def _run_checked(argv: list[str], what: str, log: Path | None = None) -> None:
    done = subprocess.run(_as_owner(argv), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = ""
        if log is not None and log.exists():
            tail = log.read_text(errors="replace")[-1500:]
        raise ServerUnavailable(
            f"{what} failed (exit {done.returncode}): {done.stderr.strip()[-1500:]} {tail}"
        )


def wait_ready(url: str, timeout_s: float = 30.0) -> None:
    """Wait until the server accepts connections."""
    import psycopg

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            psycopg.connect(url, connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--no-fsync", action="store_true", help="faster, not crash-safe")
    args = parser.parse_args()
    if args.action == "stop":
        stop(args.folder)
        return 0
    try:
        server = start(args.folder, fsync=not args.no_fsync)
    except ServerUnavailable as exc:
        print(f"pgserver: {exc}", file=sys.stderr)
        return 1
    print(server.url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
