"""A bare pass-through proxy on the gateway's own stack (starlette + uvicorn + httpx2):
bytes in, bytes out, no stages, no ledger. `benchmarks/gateway.py` measures tars-opt serve
against it, so the difference is what tars-opt itself adds.

    python benchmarks/bare_relay.py --upstream URL --port PORT
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator

import httpx2
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

HOP = {"connection", "keep-alive", "transfer-encoding", "host", "content-length", "upgrade", "te"}


def build(upstream: str) -> Starlette:
    client: httpx2.AsyncClient | None = None

    async def relay(request: Request) -> Response:
        assert client is not None
        body = await request.body()
        headers = [(k, v) for k, v in request.headers.items() if k not in HOP]
        url = upstream + request.url.path + (f"?{request.url.query}" if request.url.query else "")
        answer = await client.send(
            client.build_request(request.method, url, headers=headers, content=body or None),
            stream=True,
        )
        out = {k: v for k, v in answer.headers.items() if k not in HOP}
        return StreamingResponse(
            answer.aiter_raw(),
            status_code=answer.status_code,
            headers=out,
            background=None,
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        nonlocal client
        client = httpx2.AsyncClient(timeout=600.0)
        yield
        await client.aclose()

    methods = ["GET", "POST", "PUT", "DELETE", "PATCH"]
    return Starlette(routes=[Route("/{path:path}", relay, methods=methods)], lifespan=lifespan)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        build(args.upstream.rstrip("/")),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        server_header=False,
        date_header=False,
    )


if __name__ == "__main__":
    main()
