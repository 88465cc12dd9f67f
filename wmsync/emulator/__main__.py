"""``python -m wmsync.emulator --repository NAME --db PATH [--host H] [--port N]``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import List, Optional

from .server import serve


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m wmsync.emulator",
        description="Serve one emulated Workflow Manager repository; the first line on "
        "stdout is its root URL.",
    )
    parser.add_argument("--repository", default="Parent", help="repository (service) name")
    parser.add_argument("--db", default=None, help="SQLite file (default: ./<repository>.sqlite)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind")
    parser.add_argument("--port", type=int, default=0, help="port (0 picks a free one)")
    parser.add_argument("--token-file", default=None, help="require the token in this file")
    parser.add_argument("--clock-offset-ms", type=int, default=0, help="skew the clock")
    parser.add_argument("--no-gzip", action="store_true",
                        help="serve exports uncompressed even to clients that accept gzip")
    args = parser.parse_args(argv)
    token = None
    if args.token_file:
        with open(args.token_file, encoding="utf-8") as handle:
            token = handle.read().strip() or None
    token = token or os.environ.get("WMSYNC_SERVER_TOKEN") or None
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    serve(
        args.repository,
        args.db or f"{args.repository}.sqlite",
        host=args.host,
        port=args.port,
        token=token,
        clock_offset_ms=args.clock_offset_ms,
        gzip_exports=not args.no_gzip,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
