#!/usr/bin/env python3
"""Testee client for the Autobahn|Testsuite ``fuzzingserver`` (simplews is the client).

Asks the fuzzing server how many cases it has (``/getCaseCount``), runs each one
(``/runCase?case=N&agent=AGENT``) by echoing every message back (text as text,
binary as binary) until the server closes, then asks it to write its reports
(``/updateReports?agent=AGENT``). permessage-deflate is offered unless
``--no-compression`` is given.

Usage: python3 compliance/client.py --port 9001 [--host 127.0.0.1] [--agent simplews] [--no-compression]
"""

import argparse
import logging
import os
import sys
import time
from typing import Any, Dict

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import simplews  # noqa: E402

MAX_MESSAGE_SIZE = 64 * 1024 * 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9001)
    parser.add_argument("--agent", default="simplews")
    parser.add_argument("--no-compression", action="store_true", help="do not offer permessage-deflate")
    parser.add_argument("--compress-level", type=int, default=6,
                        help="zlib level for outgoing messages (default 6, the library's)")
    parser.add_argument("--debug", action="store_true", help="log simplews at DEBUG level")
    parser.add_argument("--quiet", action="store_true", help="no per-case progress lines")
    args = parser.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(message)s")
    base = "ws://%s:%d" % (args.host, args.port)
    compression = None if args.no_compression else simplews.DeflateConfig(compress_level=args.compress_level)
    options: Dict[str, Any] = {"compression": compression,
                               "max_message_size": MAX_MESSAGE_SIZE, "ping_interval": None, "timeout": 30}

    with simplews.connect(base + "/getCaseCount", **options) as ws:
        count = int(ws.recv(timeout=30))
    print("%d cases" % count, flush=True)

    started = time.monotonic()
    for case in range(1, count + 1):
        url = "%s/runCase?case=%d&agent=%s" % (base, case, args.agent)
        case_started = time.monotonic()
        try:
            ws = simplews.connect(url, **options)
        except (OSError, simplews.InvalidHandshake) as exc:
            print("case %d: connection failed: %s" % (case, exc), flush=True)
            continue
        try:
            for message in ws:
                ws.send(message)
        except simplews.ConnectionClosed:
            pass
        finally:
            ws.close()
        if not args.quiet:
            elapsed = time.monotonic() - case_started
            print("case %d/%d: closed with %s in %.2fs" % (case, count, ws.close_code, elapsed), flush=True)

    with simplews.connect("%s/updateReports?agent=%s" % (base, args.agent), **options) as ws:
        for _ in ws:
            pass
    print("ran %d cases in %.1fs" % (count, time.monotonic() - started), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
