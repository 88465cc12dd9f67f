"""``python -m wmsync.emulator --repository NAME [--db PATH] ...``: the same options as
``wmsync serve`` (:mod:`wmsync.serve_options`)."""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from wmsync.serve_options import add_serve_arguments, run_from_args


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m wmsync.emulator",
        description="Serve one emulated Workflow Manager repository; the first line on "
        "stdout is its root URL.",
    )
    add_serve_arguments(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
