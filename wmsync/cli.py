"""The ``wmsync`` command line: ``sync``, ``plan``, ``serve``, ``demo``, ``install-toolbox``,
``export``, ``import``, and the toolset's ``status``, ``conflicts``, ``clear``,
``replicate`` (:mod:`wmsync.toolset_cli`).

Each subcommand turns text into typed values, makes one call, and maps wmsync errors
to a message and an exit code: 0 status 0, 1 some children failed, 2 nothing could be
done, the input was refused (bad arguments: one line, before anything runs), or the run
was cancelled (Ctrl-C, SIGTERM) before every child finished. Logging is configured here
and nowhere else: stderr shows warnings (-v adds progress, -vv debug), stdout the
summary (nothing with -q).
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from . import __version__
from .auth import TokenLike
from .credentials import Credentials
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


class UsageError(Exception):
    """An argument is refused before anything runs (exit 2, one line)."""


class _CliListener(SyncListener):
    """Maps engine messages to the log; a signal turns into the engine's Cancel."""

    def __init__(self) -> None:
        self._cancel = threading.Event()

    def info(self, text: str) -> None:
        log.info("%s", text)

    def warning(self, text: str) -> None:
        log.warning("%s", text)

    def step(self, label: str) -> None:
        log.info("%s", label)

    def request_cancel(self) -> None:
        self._cancel.set()

    def cancelled(self) -> bool:
        return self._cancel.is_set()


@contextmanager
def _signals_cancel(listener: _CliListener) -> Iterator[None]:
    """Ctrl-C (SIGINT) or SIGTERM asks the engine to stop at its next safe point, as
    the toolbox's Cancel does; a second one ends the process at once (exit 128+signal).

    The handler writes with ``os.write``: a ``print`` there could re-enter a stderr
    write the main thread was in the middle of.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    seen: List[int] = []

    def handler(signum: int, frame: Any) -> None:
        seen.append(signum)
        if len(seen) == 1:
            listener.request_cancel()
            os.write(
                2,
                b"wmsync: cancelling at the next safe point "
                b"(press Ctrl-C again to abort at once)\n",
            )
        else:
            os.write(2, b"wmsync: aborted\n")
            os._exit(128 + signum)

    watched = [signal.SIGINT, signal.SIGTERM]
    previous = {signum: signal.signal(signum, handler) for signum in watched}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


# ---------------------------------------------------------------------------
# sync / plan


def _positive(kind: Callable[[str], Any], what: str) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not value > 0:  # also refuses NaN
            raise argparse.ArgumentTypeError(f"must be more than 0, not {text!r}")
        return value

    return convert


def _check_writable_file(path: str, option: str) -> None:
    """Refuse *path* now unless a file can be written in its folder: finding that out
    only after the whole sync would lose the report."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"{option} {path!r}: the folder {folder!r} does not exist")
    if os.path.isdir(path):
        raise UsageError(f"{option} {path!r} is a folder, not a file")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".wmsync-check-"):
            pass
    except OSError as exc:
        raise UsageError(
            f"{option} {path!r}: cannot write in {folder!r} ({exc.strerror or exc})"
        ) from None
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise UsageError(f"{option} {path!r} is not writable")


def _check_args(args: argparse.Namespace) -> None:
    """Everything that can be refused without a server, refused before anything runs."""
    if args.write_back:
        if not args.children_file:
            raise UsageError("--write-back needs --children-file (the file it rewrites)")
        if args.dry_run:
            raise UsageError("--write-back cannot go with a dry run, which changes nothing")
        _check_writable_file(os.path.realpath(args.children_file), "--write-back")
    if args.report:
        _check_writable_file(args.report, "--report")
    args.state = checked_state_path(args.state)
    token = args.token or os.environ.get("WMSYNC_TOKEN")
    if args.token_url and not token and not os.environ.get("WMSYNC_PASSWORD"):
        if sys.stdin is None or not sys.stdin.isatty():
            raise UsageError(
                "--token-url needs a password: set WMSYNC_PASSWORD "
                "(there is no terminal to ask for it on)"
            )


def checked_state_path(given: Optional[str]) -> str:
    """The state store of stock servers: --state, else ``WMSYNC_STATE``, else the
    default (docs/stock.md); refused now unless its folder exists or can be made."""
    from .stock import default_state_path

    path = os.path.abspath(os.path.expanduser(given)) if given else str(default_state_path())
    if os.path.isdir(path):
        raise UsageError(f"--state {path!r} is a folder; give the state file's path")
    folder = os.path.dirname(path)
    # The folder is made only when a stock server needs the store: here, the nearest
    # existing folder above it must be a folder we may write in.
    existing = folder
    while not os.path.exists(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise UsageError(
            f"--state {path!r}: the folder {folder!r} cannot be created "
            f"({existing!r} is not a folder)"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(
            f"--state {path!r}: the folder {folder!r} cannot be created "
            f"or written in (no write access to {existing!r})"
        )
    return path


def _children_lines(text: str) -> List[str]:
    """The lines of a children file that hold rows: blank lines and lines starting
    with ``#`` (comments) are left out."""
    return [
        line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]


def _read_children(args: argparse.Namespace) -> str:
    if args.children_file:
        with open(args.children_file, encoding="utf-8-sig") as handle:
            text = handle.read()
        # One row per line is friendlier in a file; the table format wants ';'.
        return ";".join(line.strip() for line in _children_lines(text))
    return str(args.children)


def _write_back(path: str, rows: List[List[str]]) -> None:
    """Rewrite the children file with the Last Synchronized *rows*, atomically (a
    temporary file in the same folder, then ``os.replace``): a cron job chains runs
    as ModelBuilder does. Comment and blank lines stay where they were; each row line
    gets its rows' new text; encoding (a BOM too) and line endings are kept."""
    from .valuetable import format_rows, row_count

    path = os.path.realpath(path)  # a symbolic link keeps pointing at the new file
    with open(path, "rb") as handle:
        raw = handle.read()
    bom = raw.startswith(b"\xef\xbb\xbf")
    text = raw.decode("utf-8-sig")
    newline = "\r\n" if "\r\n" in text else "\n"
    out: List[str] = []
    index = 0
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            count = row_count(line)
            line = format_rows(rows[index : index + count])
            index += count
        out.append(line)
    if index != len(rows):  # cannot happen: the rows were read from this very file
        raise OSError(f"{path} changed during the run; not rewritten")
    folder = os.path.dirname(os.path.abspath(path))
    fd, temp = tempfile.mkstemp(dir=folder, prefix=".wmsync-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8-sig" if bom else "utf-8", newline="") as handle:
            handle.write(newline.join(out) + newline)
            handle.flush()
            os.fsync(handle.fileno())
        shutil.copymode(path, temp)
        os.replace(temp, path)
    except BaseException:
        os.unlink(temp)
        raise


def _token(args: argparse.Namespace, redactor: _RedactingFilter, verify: Any) -> TokenLike:
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

    def fetch() -> str:
        fetched = generate_token(args.token_url, username, password, verify=verify)
        redactor.add(fetched)
        return fetched

    source = CallableToken(fetch)
    source.get()
    return source


def _verify(args: argparse.Namespace) -> Any:
    """TLS verification for every request (called once: it warns about --insecure)."""
    if args.insecure:
        print("warning: TLS certificate checks are OFF (--insecure)", file=sys.stderr)
        return False
    return args.ca_bundle or True


def _credentials(
    args: argparse.Namespace, verify: Any, redactor: _RedactingFilter
) -> Optional[Credentials]:
    """The --credentials file, read and checked (its secrets join the log's redaction)."""
    if not args.credentials:
        return None
    from .credentials import load_credentials

    credentials = load_credentials(
        args.credentials, verify=verify, timeout=args.timeout, on_secret=redactor.add
    )
    for secret in credentials.secrets:
        redactor.add(secret)
    return credentials


def replicas_with_state(
    args: argparse.Namespace,
    credentials: Optional[Credentials],
    token: TokenLike,
    verify: Any,
) -> Tuple[Callable[[str], Any], Any]:
    """(factory, stock builder) for a command on one or a few repositories (export,
    import, the toolset): servers with the extensions through their client, stock
    servers through the --state store (the caller closes the builder); with
    *credentials*, each server URL with its own token."""
    from .credentials import per_url_factory
    from .replica import default_replica_factory
    from .stock import StockReplicas

    builder = StockReplicas(checked_state_path(args.state))

    def make(source: TokenLike) -> Callable[[str], Any]:
        return default_replica_factory(
            user=args.user, token=source, timeout=args.timeout, verify=verify, stock=builder
        )

    if credentials is None:
        return make(token), builder
    return per_url_factory(credentials, token, make), builder


def _sync_access(
    args: argparse.Namespace,
    credentials: Optional[Credentials],
    token: TokenLike,
    verify: Any,
) -> Tuple[Optional[Callable[[str], Any]], Any]:
    """(factory, state) for sync and plan. With --credentials, replicas made per server
    URL with that server's token (else *token*), stock servers through one builder on
    the --state store, which the engine closes; without, (None, the --state path): the
    engine's own factory, one token for all."""
    if credentials is None:
        return None, args.state
    return replicas_with_state(args, credentials, token, verify)


def _write_report(path: Optional[str], payload: Dict[str, Any]) -> None:
    if path:
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2, ensure_ascii=False)
            handle.write("\n")


def _parent_rows(args: argparse.Namespace, children: str) -> Optional[str]:
    """Why the table is refused for naming the parent itself (as the toolbox dialog
    refuses it), or None. Other problems of the table are the engine's to report."""
    from .errors import ValueTableError
    from .valuetable import parse_children, rows_naming_parent

    try:
        specs = parse_children(children)
    except ValueTableError:
        return None
    problems = rows_naming_parent(specs, args.parent_url, args.parent_name)
    if not problems:
        return None
    return "the child table was refused, nothing changed: " + "; ".join(problems)


def cmd_sync(args: argparse.Namespace) -> int:
    from . import engine, planning
    from .report import PlanResult, SyncResult

    _check_args(args)
    token, verify, credentials = _access(args)
    children = _read_children(args)
    refused = _parent_rows(args, children)
    factory, state = (None, None) if refused else _sync_access(args, credentials, token, verify)
    if args.dry_run:
        if refused:
            planned = PlanResult(-1, args.parent_name, args.parent_url, error=refused)
        else:
            planned = planning.plan(
                args.parent_url,
                args.parent_name,
                children,
                user=args.user,
                token=token,
                client_factory=factory,
                full=args.full,
                timeout=args.timeout,
                verify=verify,
                state=state,
            )
            for warning in planned.warnings:
                log.warning("%s", warning)
        _show(args, planned.summary_lines(), planned.status, planned.error)
        _write_report(args.report, planned.to_dict())
        return _exit_code(planned.status)
    listener = _CliListener()
    if refused:
        moment = datetime.now(timezone.utc)
        result = SyncResult(-1, args.parent_name, args.parent_url, moment, moment, error=refused)
    else:
        with _signals_cancel(listener):
            result = engine.synchronize(
                args.parent_url,
                args.parent_name,
                children,
                user=args.user,
                token=token,
                client_factory=factory,
                listener=listener,
                full=args.full,
                timeout=args.timeout,
                verify=verify,
                max_workers=args.max_workers,
                state=state,
            )
    if listener.cancelled():
        result.cancelled = True  # asked for, even if the work was all done by then
    lines = result.summary_lines()
    if result.status >= 0:
        lines.append("Last Synchronized: " + _printable_table(result.last_sync_rows))
    _show(args, lines, result.status, result.error)
    _write_report(args.report, result.to_dict())
    if args.write_back and result.status >= 0:
        _write_back(args.children_file, result.last_sync_rows)
    if result.cancelled and result.status != 0:
        return EXIT_REFUSED
    return _exit_code(result.status)


def _show(args: argparse.Namespace, lines: List[str], status: int, error: Optional[str]) -> None:
    """The summary on stdout, once; with -q nothing there, and only a run that could
    not be done at all says so, on stderr (failed children were warned about already)."""
    if not args.quiet:
        for line in lines:
            print(line)
    elif status < 0:
        print(f"wmsync: error: {error or 'nothing could be done'}", file=sys.stderr)


def _printable_table(rows: List[List[str]]) -> str:
    """The Last Synchronized table for the screen: a token written into a row's URL is
    shown as ``***`` (docs/design.md §7: no printed URL carries a secret)."""
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
    from .demo import run_demo, run_stock_demo

    return run_stock_demo(print) if args.stock else run_demo(print)


def cmd_install_toolbox(args: argparse.Namespace) -> int:
    from .install import install_toolbox

    written = install_toolbox(args.dest, overwrite=args.force)
    print(f"Toolbox folder ready: {written}")
    print("In ArcGIS Pro: Catalog pane > Toolboxes > Add Toolbox > WorkflowSync.pyt")
    return EXIT_OK


# ---------------------------------------------------------------------------
# export / import: synchronization by file (docs/design.md §11)


def _access(args: argparse.Namespace) -> Tuple[TokenLike, Any, Optional[Credentials]]:
    """(token, TLS verify, credentials) of a command that talks to servers, with its
    logging set up to redact every secret it knows of."""
    known = [
        args.token or "",
        os.environ.get("WMSYNC_TOKEN", ""),
        os.environ.get("WMSYNC_PASSWORD", ""),
    ]
    redactor = configure_logging(args.verbose, args.log_file, known)
    verify = _verify(args)
    credentials = _credentials(args, verify, redactor)
    return _token(args, redactor, verify), verify, credentials


def _file_session(args: argparse.Namespace) -> Any:
    """Logging, TLS, credentials and token as ``sync`` sets them up; the replica
    factory for the one repository and the stock builder to close."""
    token, verify, credentials = _access(args)
    return (token, verify, *replicas_with_state(args, credentials, token, verify))


def cmd_export(args: argparse.Namespace) -> int:
    from .filesync import export_job_data

    out_dir = args.out if os.path.isdir(args.out) else os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_dir):
        raise UsageError(f"--out: the folder {out_dir} does not exist")
    token, verify, factory, builder = _file_session(args)
    try:
        outcome = export_job_data(
            args.url,
            args.to,
            args.out,
            register_child=args.register_child,
            child_url=args.child_url or "",
            user=args.user,
            token=token,
            replica_factory=factory,
            timeout=args.timeout,
            verify=verify,
        )
    finally:
        builder.close()
    if not args.quiet:
        print(outcome.line())
        print(f"Written: {outcome.path}")
    _write_report(
        args.report,
        {
            "status": 0,
            "file": outcome.path,
            "manifest": outcome.manifest.to_dict(),
            "registered": outcome.registered,
        },
    )
    return EXIT_OK


def cmd_import(args: argparse.Namespace) -> int:
    from .filesync import import_job_data

    if not os.path.isfile(args.file):
        raise UsageError(f"--file: {args.file} is not a file")
    token, verify, factory, builder = _file_session(args)
    try:
        outcome = import_job_data(
            args.url,
            args.file,
            user=args.user,
            token=token,
            replica_factory=factory,
            timeout=args.timeout,
            verify=verify,
        )
    finally:
        builder.close()
    for warning in outcome.warnings:
        log.warning("%s: %s", outcome.target, warning)
    if not args.quiet:
        print(outcome.line())
    _write_report(
        args.report,
        {
            "status": 0,
            "file": args.file,
            "repository": outcome.target,
            "manifest": outcome.manifest.to_dict(),
            "received": outcome.received,
            "conflicts": outcome.conflicts,
            "renumbered": outcome.renumbered,
            "idsChanged": outcome.ids_changed,
            "alreadyImported": outcome.already,
            "watermarksMoved": outcome.marks_taken,
            "gap": outcome.gap,
            "joined": outcome.joined,
        },
    )
    return EXIT_OK


def _add_access_arguments(parser: argparse.ArgumentParser) -> None:
    """How a command reaches servers and reports: user, tokens, credentials, timeouts,
    TLS, report and log files, loudness (the same for every command that talks to one)."""
    parser.add_argument(
        "--user", default=None, help="the Workflow Manager user acting (default: the OS user)"
    )
    parser.add_argument(
        "--token", default=None, help="ArcGIS token (prefer the WMSYNC_TOKEN environment variable)"
    )
    parser.add_argument(
        "--token-url",
        default=None,
        help="generateToken URL; password from WMSYNC_PASSWORD or a prompt",
    )
    parser.add_argument("--username", default=None, help="user name for --token-url")
    parser.add_argument(
        "--credentials",
        default=None,
        metavar="FILE",
        help="JSON file: a token or a token URL per server URL prefix "
        "(secrets by environment variable or file, never inline)",
    )
    parser.add_argument("--report", default=None, help="write a JSON report to this file")
    parser.add_argument(
        "--timeout",
        type=_positive(float, "a number of seconds"),
        default=60.0,
        help="per-request read timeout in seconds (default 60)",
    )
    parser.add_argument("--log-file", default=None, help="also log to this file (redacted)")
    parser.add_argument("--ca-bundle", default=None, help="a CA bundle to trust in addition")
    parser.add_argument(
        "--insecure", action="store_true", help="turn TLS certificate checks off (prints a warning)"
    )
    loudness = parser.add_mutually_exclusive_group()
    loudness.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="progress messages (-v); debug messages too (-vv)",
    )
    loudness.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="print nothing on success (warnings and errors still go to stderr)",
    )


def _add_file_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``export`` and ``import``: one repository, reached as ``sync`` does."""
    parser.add_argument("--url", required=True, help="the repository's WMServer URL")
    _add_access_arguments(parser)
    add_state_argument(parser)


def _add_file_commands(commands: Any) -> None:
    export = commands.add_parser(
        "export",
        help="write a file of the changes a disconnected peer lacks",
        description="Export Job Data: write the changes PEER has not acknowledged, with a "
        "manifest (acknowledgement, syncId, SHA-256), for a parent or child without a "
        "network connection.",
    )
    _add_file_arguments(export)
    export.add_argument(
        "--to",
        required=True,
        metavar="PEER",
        help="the repository the file is for (the parent or a child)",
    )
    export.add_argument(
        "--out",
        required=True,
        metavar="FILE",
        help="the file to write (or a folder to write it into)",
    )
    export.add_argument(
        "--register-child",
        action="store_true",
        help="PEER is a new child joining by file: register it here "
        "(node row and job id block) and put its registration in the file",
    )
    export.add_argument(
        "--child-url", default=None, help="with --register-child: the child's URL, for its node row"
    )
    export.set_defaults(func=cmd_export)

    imp = commands.add_parser(
        "import",
        help="import a file written by 'wmsync export'",
        description="Import Job Data: check the file (digest, recipient, cluster), import "
        "it atomically and take its acknowledgement; a repeated or older file changes "
        "nothing.",
    )
    _add_file_arguments(imp)
    imp.add_argument("--file", required=True, help="the file written by 'wmsync export'")
    imp.set_defaults(func=cmd_import)


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
    _add_access_arguments(parser)
    parser.add_argument(
        "--full", action="store_true", help="ignore watermarks: exchange everything both ways"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="report what would move and change nothing"
    )
    parser.add_argument(
        "--max-workers",
        type=_positive(int, "a whole number"),
        default=4,
        help="children synchronized at once (default 4)",
    )
    add_state_argument(parser)
    parser.add_argument(
        "--write-back",
        action="store_true",
        help="rewrite --children-file with the Last Synchronized rows "
        "(atomically), so that the next run picks up from this one",
    )


def add_state_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state",
        default=None,
        metavar="PATH",
        help="state store for stock servers (ArcGIS Workflow Manager "
        "without the replication extensions, synchronized through "
        "Esri's documented operations): default WMSYNC_STATE, else "
        "%%LOCALAPPDATA%%\\WorkflowSync\\state.sqlite on Windows, "
        "~/.local/state/WorkflowSync/state.sqlite elsewhere; its folder is "
        "made when a stock server needs it (docs/stock.md)",
    )


class _OneLineParser(argparse.ArgumentParser):
    """Refuses bad arguments with one line on stderr and exit 2 (no usage block)."""

    def error(self, message: str) -> Any:
        self.exit(EXIT_REFUSED, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="wmsync",
        description="Synchronize ArcGIS Workflow Manager repository clusters.",
    )
    parser.add_argument("--version", action="version", version=f"wmsync {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    sync = commands.add_parser(
        "sync",
        help="two-way synchronization of a cluster",
        description="Pull every connected child into the parent, "
        "then push the parent's changes to every child.",
    )
    _add_sync_arguments(sync)
    sync.set_defaults(func=cmd_sync)

    plan = commands.add_parser(
        "plan",
        help="what a sync would move (changes nothing)",
        description="Same as 'sync --dry-run'.",
    )
    _add_sync_arguments(plan)
    plan.set_defaults(func=cmd_sync, dry_run=True)  # parser defaults win over --dry-run's

    serve = commands.add_parser(
        "serve",
        help="run one emulated WMServer repository",
        description="Start a local Workflow Manager REST emulator; "
        "its first output line is its root URL.",
    )
    add_serve_arguments(serve)
    serve.set_defaults(func=cmd_serve)

    demo = commands.add_parser(
        "demo",
        help="a parent and two children on loopback, synchronized",
        description="Start three emulated repositories, change each, "
        "synchronize, and show that all hold the same jobs.",
    )
    demo.add_argument(
        "--stock",
        action="store_true",
        help="three stock servers (no replication extensions), synchronized "
        "through Esri's documented operations and a state store in a "
        "temporary folder",
    )
    demo.set_defaults(func=cmd_demo)

    install = commands.add_parser(
        "install-toolbox",
        help="write a drop-in toolbox folder for ArcGIS Pro",
        description="Copy WorkflowSync.pyt, its metadata and the wmsync package into DEST.",
    )
    install.add_argument("dest", help="folder to write (created if missing)")
    install.add_argument("--force", action="store_true", help="replace an existing copy")
    install.set_defaults(func=cmd_install_toolbox)
    _add_file_commands(commands)

    from .toolset_cli import add_commands

    add_commands(commands)  # status, conflicts, clear, replicate (docs/design.md §11)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``wmsync`` console script and ``python -m wmsync``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except KeyboardInterrupt:  # before the run started (e.g. at the password prompt)
        print("interrupted", file=sys.stderr)
        return EXIT_REFUSED
    except UsageError as exc:
        print(f"wmsync {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except (WMSyncError, OSError) as exc:
        log.debug("refused: %s", exc)  # reaches --log-file once it is set up
        print(f"wmsync: error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    finally:
        _reset_logging()
