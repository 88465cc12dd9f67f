"""The ``wmsync`` command line: ``sync``, ``plan``, ``serve``, ``demo``, ``install-toolbox``.

Each subcommand turns text into typed values, makes one call, and maps wmsync errors
to a message and an exit code: 0 status 0, 1 some children failed, 2 nothing could be
done or the input was refused. Logging is configured here and nowhere else.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence

from . import __version__
from .auth import TokenLike
from .errors import WMSyncError, redact_url
from .progress import SyncListener
from .serve_options import add_serve_arguments, run_from_args

log = logging.getLogger("wmsync")

EXIT_OK, EXIT_SOME_FAILED, EXIT_REFUSED = 0, 1, 2


class _RedactingFilter(logging.Filter):
    """Removes known secrets and token-like query parameters from every log record."""

    def __init__(self, secrets_: Sequence[str]) -> None:
        super().__init__()
        self._secrets = [s for s in secrets_ if s]

    def add(self, secret: str) -> None:
        """Redact *secret* too from now on (a token fetched during the run)."""
        if secret and secret not in self._secrets:
            self._secrets.append(secret)

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        for secret in self._secrets:
            text = text.replace(secret, "***")
        record.msg, record.args = redact_url(text) if "token=" in text else text, None
        return True


def configure_logging(
    verbosity: int, log_file: Optional[str], secrets_: Sequence[str]
) -> _RedactingFilter:
    """Send wmsync's log to stderr (and *log_file*), with secrets redacted; return the
    redacting filter, so that secrets learnt later can be added to it."""
    level = logging.WARNING - 10 * verbosity
    redactor = _RedactingFilter(secrets_)
    handlers: List[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    for handler in handlers:
        handler.addFilter(redactor)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger("wmsync")
    for old in root.handlers:  # a second call (the token is known now) replaces the first
        old.close()
    root.handlers = handlers
    root.setLevel(max(logging.DEBUG, level) if log_file is None else logging.DEBUG)
    for handler in handlers[:1]:
        handler.setLevel(max(logging.DEBUG, level))
    return redactor


def _reset_logging() -> None:
    """Undo :func:`configure_logging`, so that ``main`` called in-process (scripts,
    tests) leaves no handler on a stream or file that is about to close."""
    root = logging.getLogger("wmsync")
    for handler in root.handlers:
        handler.close()
    root.handlers = [logging.NullHandler()]
    root.setLevel(logging.NOTSET)


class _CliListener(SyncListener):
    """Maps engine messages to the log and the progress to short stderr lines."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def info(self, text: str) -> None:
        log.info("%s", text)

    def warning(self, text: str) -> None:
        log.warning("%s", text)

    def step(self, label: str) -> None:
        log.info("%s", label)


# ---------------------------------------------------------------------------
# sync / plan


def _read_children(args: argparse.Namespace) -> str:
    if args.children_file:
        with open(args.children_file, encoding="utf-8-sig") as handle:
            text = handle.read()
        # One row per line is friendlier in a file; the table format wants ';'.
        return ";".join(line.strip() for line in text.splitlines() if line.strip())
    return str(args.children)


def _token(args: argparse.Namespace, redactor: _RedactingFilter) -> TokenLike:
    """The token to send: --token, WMSYNC_TOKEN, or one generated from --token-url.

    A generated token is fetched here (so a refused password stops the run before it
    starts) and fetched again whenever a server answers 498 (expired) during a long
    run. Every token fetched and a typed password are added to the log's redaction.
    """
    token: Optional[str] = args.token or os.environ.get("WMSYNC_TOKEN") or None
    if token or not args.token_url:
        return token
    from .auth import CallableToken, generate_token

    username = args.username or getpass.getuser()
    password = os.environ.get("WMSYNC_PASSWORD") or getpass.getpass(
        f"Password for {username} at {redact_url(args.token_url)}: "
    )
    redactor.add(password)
    verify = _verify(args)

    def fetch() -> str:
        fetched = generate_token(args.token_url, username, password, verify=verify)
        redactor.add(fetched)
        return fetched

    source = CallableToken(fetch)
    source.get()
    return source


def _verify(args: argparse.Namespace) -> Any:
    if args.insecure:
        print("warning: TLS certificate checks are OFF (--insecure)", file=sys.stderr)
        return False
    return args.ca_bundle or True


def _write_report(path: Optional[str], payload: Dict[str, Any]) -> None:
    if path:
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2, ensure_ascii=False)
            handle.write("\n")


def cmd_sync(args: argparse.Namespace) -> int:
    from . import engine

    known = [args.token or "", os.environ.get("WMSYNC_TOKEN", ""),
             os.environ.get("WMSYNC_PASSWORD", "")]
    redactor = configure_logging(args.verbose, args.log_file, known)
    token = _token(args, redactor)
    children = _read_children(args)
    verify = _verify(args)
    if args.dry_run:
        planned = engine.plan(
            args.parent_url, args.parent_name, children, user=args.user, token=token,
            full=args.full, timeout=args.timeout, verify=verify,
        )
        for line in planned.summary_lines():
            print(line)
        _write_report(args.report, planned.to_dict())
        return _exit_code(planned.status)
    result = engine.synchronize(
        args.parent_url, args.parent_name, children, user=args.user, token=token,
        listener=_CliListener(args.quiet), full=args.full, timeout=args.timeout,
        verify=verify, max_workers=args.max_workers,
    )
    for line in result.summary_lines():
        print(line)
    if result.status >= 0 and not args.quiet:
        print("Last Synchronized: " + _printable_table(result.last_sync_rows))
    _write_report(args.report, result.to_dict())
    return _exit_code(result.status)


def _printable_table(rows: List[List[str]]) -> str:
    """The Last Synchronized table for the screen: a token written into a row's URL is
    shown as ``***`` (DESIGN §7: no printed URL carries a secret)."""
    from .valuetable import format_rows

    return format_rows([[*row[:2], redact_url(row[2]), *row[3:]] for row in rows])


def _exit_code(status: int) -> int:
    if status == 0:
        return EXIT_OK
    return EXIT_SOME_FAILED if status > 0 else EXIT_REFUSED


# ---------------------------------------------------------------------------
# serve / demo / install-toolbox


def cmd_serve(args: argparse.Namespace) -> int:
    return run_from_args(args)


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(print)


def cmd_install_toolbox(args: argparse.Namespace) -> int:
    from .install import install_toolbox

    written = install_toolbox(args.dest, overwrite=args.force)
    print(f"Toolbox folder ready: {written}")
    print("In ArcGIS Pro: Catalog pane > Toolboxes > Add Toolbox > WorkflowSync.pyt")
    return EXIT_OK


# ---------------------------------------------------------------------------


def _add_sync_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--parent-url", required=True, help="the parent's WMServer URL")
    parser.add_argument("--parent-name", required=True, help="the parent repository's name")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--children",
        help="child value table: 'name connected URL last_sync_time' rows separated by ';'",
    )
    source.add_argument("--children-file", help="a file holding the child table (one row a line)")
    parser.add_argument("--user", default=None,
                        help="the Workflow Manager user acting (default: the OS user)")
    parser.add_argument("--token", default=None,
                        help="ArcGIS token (prefer the WMSYNC_TOKEN environment variable)")
    parser.add_argument("--token-url", default=None,
                        help="generateToken URL; password from WMSYNC_PASSWORD or a prompt")
    parser.add_argument("--username", default=None, help="user name for --token-url")
    parser.add_argument("--report", default=None, help="write a JSON report to this file")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="per-request read timeout in seconds (default 60)")
    parser.add_argument("--full", action="store_true",
                        help="ignore watermarks: exchange everything both ways")
    parser.add_argument("--dry-run", action="store_true",
                        help="report what would move and change nothing")
    parser.add_argument("--max-workers", type=int, default=4,
                        help="children synchronized at once (default 4)")
    parser.add_argument("--log-file", default=None, help="also log to this file (redacted)")
    parser.add_argument("--ca-bundle", default=None, help="a CA bundle to trust in addition")
    parser.add_argument("--insecure", action="store_true",
                        help="turn TLS certificate checks off (prints a warning)")
    parser.add_argument("-v", "--verbose", action="count", default=1,
                        help="more messages (repeat for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only the summary lines")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wmsync",
        description="Synchronize ArcGIS Workflow Manager repository clusters.",
    )
    parser.add_argument("--version", action="version", version=f"wmsync {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    sync = commands.add_parser("sync", help="two-way synchronization of a cluster",
                               description="Pull every connected child into the parent, "
                               "then push the parent's changes to every child.")
    _add_sync_arguments(sync)
    sync.set_defaults(func=cmd_sync)

    plan = commands.add_parser("plan", help="what a sync would move (changes nothing)",
                               description="Same as 'sync --dry-run'.")
    _add_sync_arguments(plan)
    plan.set_defaults(func=cmd_sync, dry_run_forced=True)

    serve = commands.add_parser("serve", help="run one emulated WMServer repository",
                                description="Start a local Workflow Manager REST emulator; "
                                "its first output line is its root URL.")
    add_serve_arguments(serve)
    serve.set_defaults(func=cmd_serve)

    demo = commands.add_parser("demo", help="a parent and two children on loopback, synchronized",
                               description="Start three emulated repositories, change each, "
                               "synchronize, and show that all hold the same jobs.")
    demo.set_defaults(func=cmd_demo)

    install = commands.add_parser(
        "install-toolbox", help="write a drop-in toolbox folder for ArcGIS Pro",
        description="Copy WorkflowSync.pyt, its metadata and the wmsync package into DEST.")
    install.add_argument("dest", help="folder to write (created if missing)")
    install.add_argument("--force", action="store_true", help="replace an existing copy")
    install.set_defaults(func=cmd_install_toolbox)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``wmsync`` console script and ``python -m wmsync``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "dry_run_forced", False):
        args.dry_run = True
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_REFUSED
    except (WMSyncError, OSError) as exc:
        log.debug("refused: %s", exc)  # reaches --log-file once it is set up
        print(f"wmsync: error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    finally:
        _reset_logging()
