"""The options of an emulated WMServer, defined once for ``wmsync serve`` and
``python -m wmsync.emulator``.

This module lives outside :mod:`wmsync.emulator` and imports nothing at module level
but argparse, so that ``wmsync`` can build its whole command line (``sync`` included)
without loading the emulator or werkzeug; :func:`run_from_args` loads them.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Optional

#: Exit codes: 0 stopped cleanly, 2 refused to start (the reason in one line).
EXIT_OK, EXIT_REFUSED = 0, 2


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the emulator's options to *parser*."""
    parser.add_argument("--repository", required=True, help="repository (and service) name")
    parser.add_argument(
        "--db", default=None, help="SQLite file of the repository (default ./<repository>.sqlite)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (0 picks a free one)")
    parser.add_argument(
        "--token-file",
        default=None,
        help="require the token held in this file on every request (or set WMSYNC_SERVER_TOKEN)",
    )
    parser.add_argument(
        "--stock",
        action="store_true",
        help="answer only Esri's documented operations, as a stock Workflow Manager server does",
    )
    parser.add_argument(
        "--config",
        default=None,
        metavar="FILE",
        help="JSON job types, users and groups to add at start when missing",
    )
    parser.add_argument(
        "--clock-offset-ms", type=int, default=0, help="skew this server's clock (tests)"
    )
    parser.add_argument(
        "--no-gzip",
        action="store_true",
        help="serve exports uncompressed even to clients that accept gzip",
    )


def _token(args: argparse.Namespace) -> Optional[str]:
    token = None
    if args.token_file:
        with open(args.token_file, encoding="utf-8") as handle:
            token = handle.read().strip() or None
    return token or os.environ.get("WMSYNC_SERVER_TOKEN") or None


def run_from_args(args: argparse.Namespace) -> int:
    """Serve one repository with the options :func:`add_serve_arguments` parsed, until
    SIGTERM or Ctrl-C. A server that cannot start (a database of another repository, a
    configuration file that cannot be used, an unreadable token file) says why in one
    line on stderr and returns 2.
    """
    from wmsync.emulator.server import serve
    from wmsync.emulator.site import SiteConfigError, load_site_config
    from wmsync.repository.store import WrongRepository

    try:
        token = _token(args)
        site = load_site_config(args.config) if args.config else None
        logging.basicConfig(level=logging.INFO, stream=sys.stderr)
        serve(
            args.repository,
            args.db or f"{args.repository}.sqlite",
            host=args.host,
            port=args.port,
            token=token,
            clock_offset_ms=args.clock_offset_ms,
            gzip_exports=not args.no_gzip,
            stock=args.stock,
            site=site,
        )
    except (WrongRepository, SiteConfigError, OSError) as error:
        print(f"wmsync serve: error: {error}", file=sys.stderr)
        return EXIT_REFUSED
    return EXIT_OK
