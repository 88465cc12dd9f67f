"""Stock Workflow Manager servers: synchronized through Esri's documented REST
operations and a local state store (docs/design.md §10).

What a stock server receives:

- exactly: the job fields ``jobs/{id}/update`` sets (name, description, priority,
  status, start and due dates, parent job, owner, assignment, percent complete, data
  workspace, parent version, version name), open/closed, notes, deletion;
- approximately: holds and activity records, written with the server's own time and
  the run's user; the original repository, time and user are in a provenance tag at
  the end of the comment (``[wmsync: from Ohio, 2026-12-01 10:00 UTC, by bob; job
  <GUID>; key <GUID>]``), which is also how a later run knows its own writes;
- not at all: created/started/end dates, stage and creator (the server sets them), and
  configuration (job types, users, groups): compared, never written. A job that needs a
  job type, user or group the server lacks waits, with one warning per missing item
  and run, and arrives in the first run after an administrator has created it.

Activity records Workflow Manager logs as side effects of the tool's own writes ("Job
12 updated") stay on that server and are never sent on; records users make travel.

- :class:`StockReplicas` builds a :class:`StockReplica` for a server without the
  replication extensions (``builder(url, client, info)``), sharing one scan per
  repository per run;
- :func:`default_state_path` is where the state store lives by default;
- :func:`stock_client_factory` makes an engine client factory that uses stock
  replicas for chosen URLs (tests, and until the replica factory does it).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Optional

from .replica import StockExport, StockReplica, StockReplicas, service_name
from .state import STATE_ENV, StateStore, default_state_path


def stock_client_factory(
    builder: StockReplicas,
    *,
    user: str,
    stock_urls: Optional[Iterable[str]] = None,
    **client_options: Any,
) -> Callable[[str], Any]:
    """An engine ``client_factory``: a stock replica for every URL in *stock_urls* (all
    when ``None``), the extension client for the others."""
    from wmsync.client import WMServerClient

    chosen = None if stock_urls is None else {u.rstrip("/").lower() for u in stock_urls}

    def make(url: str) -> Any:
        client = WMServerClient(url, user=user, **client_options)
        if chosen is None or url.rstrip("/").lower() in chosen:
            return builder(url, client, None)
        return client

    return make


__all__ = [
    "STATE_ENV",
    "StateStore",
    "StockExport",
    "StockReplica",
    "StockReplicas",
    "default_state_path",
    "service_name",
    "stock_client_factory",
]
