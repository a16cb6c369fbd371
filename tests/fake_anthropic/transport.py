"""HTTP plumbing of the fake API: a threading server and a handler that writes plain, streamed
(chunked SSE) and deliberately broken answers. The API logic lives in `server.FakeAnthropic`."""

from __future__ import annotations

import json
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .faults import Fault


class ApiError(Exception):
    """An error the fake answers with the API's error JSON."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error_type, self.message = status, error_type, message


@dataclass
class Response:
    """A complete answer."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Stream:
    """An SSE answer: (event name, data) pairs."""

    events: list[tuple[str, dict[str, Any]]]


class HTTPServer(ThreadingHTTPServer):
    """A thread per connection; every request goes to `handle(handler, method)`."""

    daemon_threads = True
    request_queue_size = 128  # many concurrent SDK clients in one process

    def __init__(self, address: tuple[str, int], handle: Callable[[Handler, str], None]) -> None:
        self.handle_request_with = handle
        super().__init__(address, Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that time out or hang up are normal in fault tests


class Handler(BaseHTTPRequestHandler):
    """Reads bodies and writes answers; `reset()` drops the connection on purpose."""

    protocol_version = "HTTP/1.1"  # keep-alive and chunked streams, like the real API
    wbufsize = 1 << 16  # headers and body leave in one segment: no Nagle / delayed-ACK stalls
    server: HTTPServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _dispatch(self, method: str) -> None:
        try:
            self.server.handle_request_with(self, method)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError):
            self.close_connection = True

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while (size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)) > 0:
                data += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
            return data
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def send(self, response: Response, request_id: str, cut: bool = False) -> None:
        """Answer with a full body; `cut` sends only half of it, then drops the connection."""
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header("request-id", request_id)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if cut:
            self.wfile.write(response.body[: len(response.body) // 2])
            self.wfile.flush()
            return self.reset()
        self.wfile.write(response.body)
        self.wfile.flush()

    def send_stream(
        self,
        events: list[tuple[str, dict[str, Any]]],
        request_id: str,
        fault: Fault | None,
        delay: float,
        stopping: threading.Event,
    ) -> None:
        """Write SSE events as HTTP chunks; a stream fault cuts or errors after some events."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("request-id", request_id)
        self.end_headers()
        stop_at = None
        if fault is not None and fault.kind in ("stream_cut", "stream_error"):
            stop_at = max(1, min(fault.after_events, len(events) - 1))
        for n, (name, data) in enumerate(events):
            if n == stop_at and fault is not None:
                if fault.kind == "stream_cut":
                    return self.reset()  # no terminating chunk: the client sees an incomplete body
                error = {
                    "type": "error",
                    "error": {
                        "type": fault.error_type or "overloaded_error",
                        "message": fault.message or "Overloaded",
                    },
                    "request_id": request_id,
                }
                self._chunk(f"event: error\ndata: {json.dumps(error)}\n\n".encode())
                break
            self._chunk(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
            if delay:
                stopping.wait(delay)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def reset(self) -> None:
        """Drop the connection without (the rest of) an answer; SO_LINGER 0 makes it a reset."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
