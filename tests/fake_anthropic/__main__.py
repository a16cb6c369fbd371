"""Serve the fake API as its own process, e.g. for benchmarks and soak runs.

    python -m tests.fake_anthropic --port 0 --print-url [--request-delay 0.2]
        [--event-delay 0.01] [--min-cacheable 1024] [--min-cacheable-model MODEL=N]
        [--api-key KEY] [--no-strict]

With --print-url the first line on stdout is the base URL (http://127.0.0.1:PORT). It serves
until SIGTERM or SIGINT, then exits 0.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from .server import FakeAnthropic


def _model_minimum(spec: str) -> tuple[str, int]:
    model, sep, tokens = spec.partition("=")
    if not sep or not model or not tokens.isdigit():
        raise argparse.ArgumentTypeError(f"expected MODEL=TOKENS, got {spec!r}")
    return model, int(tokens)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fake_anthropic", description="Run the fake Anthropic API."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument("--print-url", action="store_true", help="print the base URL first")
    parser.add_argument(
        "--request-delay", type=float, default=0.0, help="seconds every request waits"
    )
    parser.add_argument(
        "--event-delay", type=float, default=0.0, help="seconds between two SSE events"
    )
    parser.add_argument("--min-cacheable", type=int, default=1024, help="tokens (all models)")
    parser.add_argument(
        "--min-cacheable-model",
        type=_model_minimum,
        action="append",
        default=[],
        metavar="MODEL=N",
        help="minimum cacheable tokens of one model (repeatable)",
    )
    parser.add_argument("--api-key", default=None, help="require this key (default: any)")
    parser.add_argument(
        "--no-strict", action="store_true", help="skip the conversation checks (see validate)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.request_delay < 0 or args.event_delay < 0:
        print("error: delays must be >= 0", file=sys.stderr)
        return 2
    api = FakeAnthropic(
        min_cacheable_tokens=args.min_cacheable,
        api_key=args.api_key,
        strict=not args.no_strict,
        host=args.host,
        port=args.port,
    )
    api.min_cacheable_by_model.update(dict(args.min_cacheable_model))
    api.request_delay = args.request_delay
    api.stream_event_delay = args.event_delay
    done = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        api.start()
    except OSError as err:
        print(f"error: cannot listen on {args.host}:{args.port}: {err.strerror}", file=sys.stderr)
        return 2
    if args.print_url:
        print(api.url, flush=True)
    try:
        while not done.wait(0.5):
            pass
    finally:
        api.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
