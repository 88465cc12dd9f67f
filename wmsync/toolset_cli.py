"""The replication toolset on the command line: ``wmsync status | conflicts | clear |
replicate`` (docs/design.md §5, §11).

Each subcommand makes one call into its module (:mod:`wmsync.status`,
:mod:`wmsync.conflicts`, :mod:`wmsync.clear`, :mod:`wmsync.replicate`) and prints
its text or JSON. Errors reach :func:`wmsync.cli.main`, which prints them in one line
and exits 2 (nothing changed). Exit codes: 0 done/healthy, 1 partly done (a child
unreachable or too old; a child's side not cleared; the join's exchange failed), 2
refused or nothing readable.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List
from urllib.parse import urlsplit

from .replica import ReplicaFactory

__all__ = ["add_commands"]

EXIT_OK, EXIT_PARTLY, EXIT_REFUSED = 0, 1, 2


class ToolsetUsageError(ValueError):
    """A bad argument, refused before any server is asked."""


@contextmanager
def _replicas(args: argparse.Namespace) -> Iterator[ReplicaFactory]:
    """Replicas for the command: servers with the extensions through their client,
    stock servers through the state store (``--state``, docs/stock.md), whose
    repositories are held for this command and let go at its end."""
    if not args.timeout > 0:  # also refuses NaN
        raise ToolsetUsageError(f"--timeout must be more than 0 seconds, not {args.timeout}")
    from .cli import replicas_with_state

    verify: Any = False if args.insecure else (args.ca_bundle or True)
    token = args.token or os.environ.get("WMSYNC_TOKEN") or None
    factory, builder = replicas_with_state(args, None, token, verify)
    try:
        yield factory
    finally:
        builder.close()


def check_url(option: str, url: str) -> None:
    """Refuse a URL that is not http(s) (one line naming the option), before any
    request, so that nothing changes."""
    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ToolsetUsageError(f"{option} {url!r} is not an http(s) URL of a WMServer service")


def _print_json(payload: Dict[str, Any]) -> None:
    print(json.dumps(payload, indent=2, ensure_ascii=False))


def _print(lines: List[str]) -> None:
    for line in lines:
        print(line)


def cmd_status(args: argparse.Namespace) -> int:
    from .status import cluster_status

    check_url("--parent-url", args.parent_url)
    if args.max_age is not None and not args.max_age > 0:
        raise ToolsetUsageError(f"--max-age must be more than 0 hours, not {args.max_age}")
    with _replicas(args) as factory:
        result = cluster_status(
            args.parent_url, args.parent_name, factory, max_age_hours=args.max_age
        )
    if args.json:
        _print_json(result.to_dict())
    else:
        _print(result.lines())
    return result.code


def cmd_conflicts(args: argparse.Namespace) -> int:
    check_url("--url", args.url)
    with _replicas(args) as factory:
        replica = factory(args.url)
        try:
            return _conflicts(args, replica)
        finally:
            replica.close()


def _conflicts(args: argparse.Namespace, replica: Any) -> int:
    from .conflicts import conflict_entries, restore

    entries = conflict_entries(replica)
    if args.restore is not None:
        done = restore(replica, args.restore, entries)
        if args.json:
            _print_json(
                {
                    "restored": done.entry.to_dict(),
                    "done": done.done,
                    "not_restored": done.not_restored,
                }
            )
        else:
            _print(done.lines())
        return EXIT_OK
    if args.json:
        _print_json(
            {
                "repository": replica.display_url,
                "conflicts": [entry.to_dict() for entry in entries],
            }
        )
    else:
        _print([entry.line() for entry in entries] or ["no conflicts logged"])
        if entries:
            print(f"{len(entries)} conflicts; make a loser current again with --restore NUMBER")
    return EXIT_OK


def cmd_clear(args: argparse.Namespace) -> int:
    from .clear import clear_cluster, clear_repository

    if args.url:
        if args.parent_url or args.parent_name or args.child:
            raise ToolsetUsageError(
                "--url clears one repository's own rows: it goes "
                "without --parent-url, --parent-name and --child"
            )
        check_url("--url", args.url)
        with _replicas(args) as factory:
            result = clear_repository(args.url, factory)
    else:
        if not (args.parent_url and args.parent_name):
            raise ToolsetUsageError(
                "give --parent-url and --parent-name (the cluster), "
                "or --url (one repository's own rows)"
            )
        check_url("--parent-url", args.parent_url)
        with _replicas(args) as factory:
            result = clear_cluster(args.parent_url, args.parent_name, factory, child=args.child)
    if args.json:
        _print_json(result.to_dict())
    else:
        _print(result.lines())
    return EXIT_PARTLY if result.status else EXIT_OK


def cmd_replicate(args: argparse.Namespace) -> int:
    from .replicate import replicate

    check_url("--parent-url", args.parent_url)
    check_url("--child-url", args.child_url)
    with _replicas(args) as factory:
        result = replicate(
            args.parent_url, args.parent_name, args.child_url, args.child_name, factory
        )
    if result.status < 0:  # refused before anything changed: one line, like bad input
        print(f"wmsync replicate: error: {result.lines()[0]}", file=sys.stderr)
        return EXIT_REFUSED
    if args.json:
        _print_json(result.to_dict())
    else:
        _print(result.lines())
    return EXIT_PARTLY if result.status else EXIT_OK


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--user", default=None, help="the Workflow Manager user acting (default: the OS user)"
    )
    parser.add_argument(
        "--token", default=None, help="ArcGIS token (prefer the WMSYNC_TOKEN environment variable)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="per-request read timeout in seconds (default 60)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    from .cli import add_state_argument

    add_state_argument(parser)
    parser.add_argument("--ca-bundle", default=None, help="a CA bundle to trust in addition")
    parser.add_argument("--insecure", action="store_true", help="turn TLS certificate checks off")


def add_commands(commands: Any) -> None:
    """Add the toolset's subcommands to ``wmsync``'s subparsers."""
    handlers: Dict[str, Callable[[argparse.Namespace], int]] = {}

    status = commands.add_parser(
        "status",
        help="cluster status: roles, id blocks, last sync, changes waiting",
        description="Per repository of a cluster: role, URL, job id block, last "
        "synchronization, elements waiting in each direction, conflicts logged, whether "
        "it is reachable, and warnings. Changes nothing. Exit 0 healthy, 1 a child "
        "unreachable or (with --max-age) not synchronized for longer, 2 nothing readable.",
    )
    status.add_argument("--parent-url", required=True, help="the parent's WMServer URL")
    status.add_argument("--parent-name", required=True, help="the parent repository's name")
    status.add_argument(
        "--max-age",
        type=float,
        default=None,
        metavar="HOURS",
        help="a child not synchronized for longer is unhealthy (exit 1)",
    )
    _common(status)
    handlers["status"] = cmd_status

    conflicts = commands.add_parser(
        "conflicts",
        help="the conflict log; --restore makes a loser current again",
        description="List a repository's conflict log (numbered, oldest first) with job "
        "id, name, kind, time, winner and loser origins and the fields that differ. "
        "--restore NUMBER makes that conflict's losing version the current one again, as "
        "a new local edit that the next synchronization carries everywhere.",
    )
    conflicts.add_argument("--url", required=True, help="the repository's WMServer URL")
    conflicts.add_argument(
        "--restore",
        default=None,
        metavar="NUMBER",
        help="the conflict's number in the list (or its element GUID)",
    )
    _common(conflicts)
    handlers["conflicts"] = cmd_conflicts

    clear = commands.add_parser(
        "clear",
        help="Clear Job Replication Information: leave a cluster",
        description="Remove one child (--child) or the whole cluster from the node "
        "tables of the parent and of every reachable child. Jobs are never deleted. "
        "--url URL instead clears one repository's own rows about its cluster (a child "
        "that was unreachable when its cluster was cleared).",
    )
    clear.add_argument("--parent-url", default=None, help="the parent's WMServer URL")
    clear.add_argument("--parent-name", default=None, help="the parent repository's name")
    clear.add_argument("--child", default=None, help="remove only this child")
    clear.add_argument(
        "--url", default=None, help="clear this one repository's rows about its cluster"
    )
    _common(clear)
    handlers["clear"] = cmd_clear

    replicate = commands.add_parser(
        "replicate",
        help="Replicate Job Data: join a child to a cluster",
        description="Check membership, register the child with the parent, give it its "
        "job id block and exchange everything both ways (a full synchronization of that "
        "one child); report what moved.",
    )
    replicate.add_argument("--parent-url", required=True, help="the parent's WMServer URL")
    replicate.add_argument("--parent-name", required=True, help="the parent repository's name")
    replicate.add_argument("--child-url", required=True, help="the child's WMServer URL")
    replicate.add_argument("--child-name", required=True, help="the child repository's name")
    _common(replicate)
    handlers["replicate"] = cmd_replicate

    for name, handler in handlers.items():
        commands.choices[name].set_defaults(func=_guarded(handler))


def _guarded(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Bad arguments become one line and exit 2, like any refused input."""

    def run(args: argparse.Namespace) -> int:
        from .cli import UsageError

        try:
            return handler(args)
        except ToolsetUsageError as exc:
            raise UsageError(str(exc)) from None

    return run
