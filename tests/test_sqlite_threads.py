"""Database connections are per thread: those of threads that ended do not pile up."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from tars_opt.store import connect


def test_connections_of_threads_that_ended_are_closed(tmp_path: Path) -> None:
    db = connect(tmp_path / "t.db")

    def work(i: int) -> None:
        db.execute("SELECT 1")

    for _ in range(5):
        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    db.execute("SELECT 1")  # this thread's own, kept
    opened: list[Any] = []
    t = threading.Thread(target=lambda: opened.append(db.execute("SELECT 1")))
    t.start()
    t.join()
    # The ended workers' connections were closed when the last thread opened its own.
    assert len(db._all) <= 3  # noqa: SLF001 - the count is the point
