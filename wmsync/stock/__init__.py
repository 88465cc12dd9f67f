"""Stock Workflow Manager servers: synchronized through Esri's documented REST
operations and a local state store (docs/design.md §10).

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
