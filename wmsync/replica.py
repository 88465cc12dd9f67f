"""The replica interface: how the engine reaches one repository (docs/design.md §3, §10).

The engine talks to every repository through a :class:`Replica` and gets replicas from
a factory (``make(url)``). Two implementations exist: the *extension replica*, which is
:class:`wmsync.client.WMServerClient` itself, for servers whose ``replication/info``
carries the extension marker; and the *stock
replica* for every other server, built by a ``stock`` builder handed to
:func:`default_replica_factory` (it lives in its own package). Which one a URL gets is
the factory's choice, made once per URL per factory; the engine never asks.
"""

from __future__ import annotations

import getpass
import threading
import weakref
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Protocol

from .auth import TokenLike, as_token_source

if TYPE_CHECKING:  # the HTTP client is imported only when a factory makes a replica
    from .client import WMServerClient

__all__ = [
    "Replica",
    "ReplicaFactory",
    "StockBuilder",
    "default_replica_factory",
    "has_extensions",
]


class Replica(Protocol):
    """What the engine needs from one repository; one thread uses it, then closes it."""

    display_url: str

    def replication_info(self) -> Dict[str, Any]:
        """The node rows plus ``repository`` (its own name) and ``generation``."""
        ...

    def require_extensions(self, info: Mapping[str, Any]) -> None: ...

    def update_node(
        self,
        name: str,
        *,
        server_url: Optional[str] = None,
        is_parent: Optional[bool] = None,
        is_connected: Optional[bool] = None,
        last_sync_gen: Optional[int] = None,
        sync_id: Optional[str] = None,
        stamp_last_sync: bool = False,
        job_id_start: Optional[int] = None,
        job_id_block: Optional[int] = None,
        sync_seq: Optional[int] = None,
        peer_seq: Optional[int] = None,
        peer_instance: Optional[str] = None,
        peer_gen_seen: Optional[int] = None,
        peer_gen: Optional[int] = None,
        peer_counter_seen: Optional[str] = None,
    ) -> Optional[int]:
        """``sync_seq``, ``peer_seq``, ``peer_instance``, ``peer_gen_seen`` and
        ``peer_counter_seen`` serve restore
        detection (docs/design.md §4); the engine passes them only to a replica whose
        ``replication_info`` reports an ``instanceId`` (others may ignore them).
        ``peer_gen`` is the file exchange's mark (docs/design.md §11)."""
        ...

    def reset_node(self, name: str) -> None: ...

    def renumber_own_jobs(
        self, name: str, peer: str, job_id_start: int, job_id_block: int, *, dry_run: bool = False
    ) -> List[Dict[str, Any]]:
        """A joining child (*name*, joining *peer*) moves the jobs it made itself into its
        block, each with an activity record (docs/design.md §4, "A job has one id on
        every repository"); ``[{"guid", "from", "to"}]``. With *dry_run* nothing
        changes. A replica that cannot change ids answers ``[]``."""
        ...

    def export(self, since_gen: int, exclude_via: Optional[str] = None) -> Any:
        """Changes after *since_gen*: an object with ``jxl_url``, ``generation``, ``count``."""
        ...

    def count_changes(self, since_gen: int, exclude_via: Optional[str] = None) -> int:
        """How many elements :meth:`export` would hold, writing nothing anywhere."""
        ...

    def download(self, jxl_url: str, dest: Any) -> int: ...

    def import_document(
        self,
        path: str,
        merge: bool = True,
        *,
        gzip: bool = False,
        peer: Optional[str] = None,
        peer_seq: Optional[int] = None,
    ) -> Dict[str, Any]:
        """Merge the document at *path*; with *peer* and *peer_seq*, the node row of
        *peer* records *peer_seq* (``peerSeq``) in the same transaction."""

    def conflicts(self, since_gen: Optional[int] = None) -> List[Dict[str, Any]]: ...

    def close(self) -> None: ...


ReplicaFactory = Callable[[str], Replica]
#: Builds the stock replica of a server without the extensions: (url, the client
#: already open on it, its replication/info answer) -> a Replica that owns the client.
StockBuilder = Callable[[str, "WMServerClient", Mapping[str, Any]], Replica]


class _Factory:
    """``make(url)``: the right replica for *url*; its kind is read once and kept."""

    def __init__(
        self,
        user: str,
        token: TokenLike,
        timeout: float,
        verify: Any,
        stock: Optional[StockBuilder],
    ) -> None:
        self._user = user
        # One token source for every client: a token function is called once, and a
        # refresh after a 498 serves all of them, not only the client that saw it.
        self._token = as_token_source(token)
        self._timeout = timeout
        self._verify = verify
        self._stock = stock
        from .transport import EnvironmentSettings  # with the HTTP client, not before

        # One read of the proxy and CA-bundle settings per server for every client
        # made here, rather than one per client (the factory makes one per task).
        self._environment = EnvironmentSettings()
        self._lock = threading.Lock()
        self._url_locks: Dict[str, threading.Lock] = {}
        self._kinds: Dict[str, Mapping[str, Any]] = {}  # url -> its replication/info
        # url -> the client holding the info read just now, until another replica of
        # that server is made (see __call__)
        self._holding: Dict[str, weakref.ref[WMServerClient]] = {}

    def client(self, url: str) -> WMServerClient:
        from . import client  # looked up at each call: tests may substitute the class

        return client.WMServerClient(
            url,
            user=self._user,
            token=self._token,
            timeout=self._timeout,
            verify=self._verify,
            environment=self._environment,
        )

    def __call__(self, url: str) -> Replica:
        key = url.rstrip("/").lower()
        with self._lock:
            url_lock = self._url_locks.setdefault(key, threading.Lock())
        client = self.client(url)
        try:
            with url_lock:  # one read per URL, even when workers ask at the same moment
                _drop_held(self._holding.pop(key, None))  # this replica could write
                info = self._kinds.get(key)
                if info is None:
                    info = client.replication_info()
                    self._kinds[key] = info
                    if has_extensions(info):
                        # A caller's first request to a server it reaches is this same
                        # read (the engine reads each repository's info as a run
                        # begins): handed over, not repeated, unless the client asks
                        # something else first or another replica of it is made.
                        client.hold_info(info)
                        self._holding[key] = weakref.ref(client)
            if self._stock is not None and not has_extensions(info):
                return self._stock(url, client, info)  # it owns the client from now on
            client.require_extensions(info)  # without a stock builder: refused, by URL
        except BaseException:
            client.close()
            raise
        return client


def _drop_held(held: Optional[weakref.ref[WMServerClient]]) -> None:
    client = held() if held is not None else None
    if client is not None:
        client.drop_held_info()


def has_extensions(info: Mapping[str, Any]) -> bool:
    """Whether a ``replication/info`` answer carries the extension marker."""
    from .client import EXTENSION

    extensions = info.get("extensions")
    return isinstance(extensions, (list, tuple)) and EXTENSION in extensions


def default_replica_factory(
    user: Optional[str] = None,
    token: TokenLike = None,
    timeout: float = 60.0,
    verify: Any = True,
    stock: Optional[StockBuilder] = None,
) -> ReplicaFactory:
    """A factory of replicas over HTTP, all acting as *user* with *token*.

    ``make(url)`` may be called many times per URL; each replica it returns is used by
    one thread and then closed.

    :param stock: builds the replica of a server without the extensions; without it
        such a server is refused (:class:`~wmsync.errors.MissingExtensions`).
    """
    return _Factory(user or getpass.getuser(), token, timeout, verify, stock)
