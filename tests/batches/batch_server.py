"""A minimal gateway for the SIGKILL tests: the batch routes on uvicorn with the drain
running inside (as `serve` runs it), optionally killing itself with SIGKILL at one drain
step. `POST /test/wake` runs the drain's collector now, so the test need not wait for its
schedule.

python -m tests.batches.batch_server <port> [<step>]   (environment: TARS_OPT_HOME, ANTHROPIC_*)
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tars_opt import open_app
from tars_opt.defer.facade import BatchFacade
from tars_opt.drain import runner
from tars_opt.drain.daemon import start_drain
from tars_opt.gateway.batches import batch_routes


def main(port: int, step: str | None) -> None:
    if step:
        original = runner.Drainer.__init__

        def with_kill(self: Any, *args: Any, **kwargs: Any) -> None:
            def checkpoint(name: str) -> None:
                if name == step:
                    os.kill(os.getpid(), signal.SIGKILL)

            original(self, *args, **{**kwargs, "checkpoint": checkpoint})

        runner.Drainer.__init__ = with_kill  # type: ignore[method-assign]
    app = open_app()
    daemon = start_drain(app.config, app.config.resolved_database())
    assert daemon is not None
    facade = BatchFacade(app.config, app.db, on_cancel=daemon.wake)

    async def wake(request: Request) -> Response:
        daemon.wake()
        return Response(status_code=204)

    routes = [*batch_routes(facade), Route("/test/wake", wake, methods=["POST"])]
    uvicorn.run(Starlette(routes=routes), host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else None)
