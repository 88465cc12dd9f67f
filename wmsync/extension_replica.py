"""The extension replica: a server with the WorkflowSync replication extensions.

It is :class:`wmsync.client.WMServerClient` unchanged, plus :meth:`count_changes`
(``replication/export?countOnly=true``, which writes no file), made through the
client's own ``get``.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from .client import EXTENSION, WMServerClient
from .errors import ProtocolError

__all__ = ["ExtensionReplica"]


class ExtensionReplica(WMServerClient):
    """A server with the WorkflowSync extensions: the client, plus a counting export."""

    def count_changes(self, since_gen: int, exclude_via: Optional[str] = None) -> int:
        """``replication/export?countOnly=true``: the export's count, and no file.

        :raises ProtocolError: when the answer has no integer ``count``.
        """
        answer = self.get(
            "replication/export", sinceGen=since_gen, excludeVia=exclude_via, countOnly="true"
        )
        count = answer.get("count")
        if not isinstance(count, int) or isinstance(count, bool):
            raise ProtocolError(
                "replication/export?countOnly=true answered without an integer count",
                self.display_url,
            )
        return count

    @staticmethod
    def has_extensions(info: Mapping[str, Any]) -> bool:
        """Whether a ``replication/info`` answer carries the extension marker."""
        extensions = info.get("extensions")
        return isinstance(extensions, (list, tuple)) and EXTENSION in extensions

def has_extensions(info: Mapping[str, Any]) -> bool:
    """Whether a ``replication/info`` answer carries the extension marker."""
    extensions = info.get("extensions")
    return isinstance(extensions, (list, tuple)) and EXTENSION in extensions
