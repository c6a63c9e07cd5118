#!/usr/bin/env python3
"""JSON-RPC over WebSocket: a small request/response server, and a client for it.

    python examples/json_rpc.py [--host HOST] [--port PORT]           # serve
    python examples/json_rpc.py --call add 1 2 [--url ws://HOST:PORT/]  # call: prints 3

Each text message is one request shaped like JSON-RPC 2.0; each answer carries
the request's ``id``::

    --> {"jsonrpc": "2.0", "id": 1, "method": "add", "params": [1, 2]}
    <-- {"jsonrpc": "2.0", "id": 1, "result": 3}
    --> {"id": 2, "method": "divide", "params": [1, 0]}
    <-- {"jsonrpc": "2.0", "id": 2, "error": {"code": -32601, "message": "method not found: 'divide'"}}

Error codes: -32700 parse error (not JSON), -32600 invalid request (not a
request object), -32601 method not found, -32602 invalid params, -32603
internal error. A request without ``id`` is a notification: it runs, and gets
no answer. Batches (JSON arrays) are not supported.

Methods: ``add(a, b, ...)``, ``echo(value)``, ``time()`` (the server's clock, in
seconds since 1970) and ``sleep(seconds)`` (at most 10). The server is
threaded: each connection has its own thread, so one client's ``sleep`` does
not hold up another client (try two ``--call sleep 2`` at once: both finish
after about two seconds). Requests on one connection are answered in order.

``--port 0`` picks a free port; the real one is printed.
"""

import argparse
import inspect
import json
import logging
import os
import sys
import time
from typing import Any, Callable, Dict, Optional, Sequence

try:
    import simplews
except ImportError:  # run from a checkout, not installed: use the package beside this folder
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
    import simplews
from simplews import demo

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603


class RPCError(Exception):
    """An error answer: raised by a method to send it, or by :func:`call` on receiving one."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__("%s (code %d)" % (message, code))
        self.code = code
        self.message = message


# ---------------------------------------------------------------------- the methods

def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def add(*numbers: Any) -> Any:
    if not all(is_number(n) for n in numbers):
        raise RPCError(INVALID_PARAMS, "add takes numbers")
    return sum(numbers)


def echo(value: Any) -> Any:
    return value


def server_time() -> float:
    return time.time()


def sleep(seconds: Any) -> Dict[str, float]:
    if not is_number(seconds) or not 0 <= seconds <= 10:
        raise RPCError(INVALID_PARAMS, "sleep takes a number of seconds from 0 to 10")
    started = time.time()
    time.sleep(seconds)
    return {"slept": seconds, "started": started, "finished": time.time()}


METHODS = {"add": add, "echo": echo, "time": server_time, "sleep": sleep}  # type: Dict[str, Callable[..., Any]]


# ---------------------------------------------------------------------- the server

def handle(text: str) -> Optional[Dict[str, Any]]:
    """The answer to one request: a dict, or None for a notification (a request without "id")."""
    try:
        request = json.loads(text)
    except ValueError:
        return error_answer(None, PARSE_ERROR, "parse error: not JSON")
    if not isinstance(request, dict):
        return error_answer(None, INVALID_REQUEST, "invalid request: expected a JSON object")
    request_id = request.get("id") if is_valid_id(request.get("id")) else None
    try:
        answer = {"jsonrpc": "2.0", "id": request_id, "result": run(request)}
    except RPCError as exc:
        answer = error_answer(request_id, exc.code, exc.message)
    if "id" not in request:
        return None  # a notification: it ran, nobody waits for an answer
    return answer


def run(request: Dict[str, Any]) -> Any:
    """Check the request, call its method, return the result; raises RPCError."""
    method = request.get("method")
    params = request.get("params", [])
    if request.get("jsonrpc", "2.0") != "2.0" or not isinstance(method, str):
        raise RPCError(INVALID_REQUEST, "invalid request: expected a method name")
    if not is_valid_id(request.get("id")):
        raise RPCError(INVALID_REQUEST, "invalid request: id must be a string or a number")
    if not isinstance(params, (list, dict)):
        raise RPCError(INVALID_REQUEST, "invalid request: params must be an array or an object")
    function = METHODS.get(method)
    if function is None:
        raise RPCError(METHOD_NOT_FOUND, "method not found: %r" % method)
    args = params if isinstance(params, list) else []
    kwargs = params if isinstance(params, dict) else {}
    try:
        inspect.signature(function).bind(*args, **kwargs)  # the right number and names of params?
    except TypeError as exc:
        raise RPCError(INVALID_PARAMS, "invalid params: %s" % exc)
    try:
        return function(*args, **kwargs)
    except RPCError:
        raise
    except Exception:
        logging.exception("method %s failed", method)
        raise RPCError(INTERNAL_ERROR, "internal error")


def is_valid_id(value: Any) -> bool:
    return value is None or isinstance(value, str) or is_number(value)


def error_answer(request_id: Any, code: int, message: str) -> Dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}


def serve_connection(ws: simplews.WebSocket) -> None:
    """One connection, on its own thread: answer each request in turn."""
    for message in ws:
        if isinstance(message, bytes):
            answer = error_answer(None, PARSE_ERROR, "parse error: send JSON as text messages")  # type: Any
        else:
            answer = handle(message)
        if answer is not None:
            ws.send(json.dumps(answer))


# ---------------------------------------------------------------------- the client

def call(url: str, method: str, *params: Any, timeout: float = 30.0) -> Any:
    """Connect, call ``method(*params)``, return its result (or raise RPCError), disconnect."""
    with simplews.connect(url, timeout=timeout) as ws:
        ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}))
        answer = json.loads(ws.recv(timeout=timeout))
    if "error" in answer:
        raise RPCError(answer["error"]["code"], answer["error"]["message"])
    return answer["result"]


def parse_param(text: str) -> Any:
    """A command-line argument as JSON if it is JSON (``1``, ``[1, 2]``, ``true``), else as a string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="simplews JSON-RPC server, or (with --call) its client")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default %(default)s)")
    parser.add_argument("--port", type=int, default=8765,
                        help="port to listen on (default %(default)s; 0 picks a free port)")
    parser.add_argument("--call", metavar="METHOD", help="call METHOD on a running server and print the result")
    parser.add_argument("params", nargs="*", help="with --call: the parameters (JSON, or plain strings)")
    parser.add_argument("--url", default="ws://127.0.0.1:8765/", help="with --call: the server (default %(default)s)")
    args = parser.parse_args(argv)

    if args.call:
        try:
            result = call(args.url, args.call, *[parse_param(p) for p in args.params])
        except (RPCError, simplews.WebSocketError, OSError) as exc:
            print("error: %s" % exc, file=sys.stderr)
            return 1
        print(json.dumps(result))
        return 0

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = simplews.SimpleWSServer(serve_connection, host=args.host, port=args.port)
    return demo.run(server)  # prints "listening on ws://HOST:PORT", serves until Ctrl+C


if __name__ == "__main__":
    sys.exit(main())
