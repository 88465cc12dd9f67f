"""A Workflow Manager REST server ("WMServer") for tests, demos and offline trials.

One emulated repository is one SQLite file (:mod:`wmsync.repository.store`) served by a
werkzeug WSGI application (:mod:`wmsync.emulator.app`). It speaks the Esri parts of
``docs/protocol.md`` that Esri's JavaScript client uses, plus the WorkflowSync
replication extensions (export, import, nodes, conflicts); with ``stock=True``
(``wmsync serve --stock``) only Esri's documented operations, as a stock server does.

Nothing outside this package imports it: ``import wmsync`` never needs werkzeug.

- :func:`wmsync.emulator.server.serve` runs one repository until SIGTERM or Ctrl-C;
- :func:`wmsync.emulator.server.start_in_thread` runs one in a thread (tests, demos);
- :func:`wmsync.emulator.app.create_app` builds the WSGI application from a config:
  fault middleware (:mod:`.faults`) around the REST app (:mod:`.app`), which routes
  (:mod:`.routes`: the extended table or the stock one) to plain handler functions
  (:mod:`.api_config`, :mod:`.api_jobs`, :mod:`.api_replication`) over a
  :class:`~wmsync.emulator.context.Context`;
- :data:`wmsync.emulator.limits.MAX_TEXT_CHARS` is the REST API's text limit;
- :mod:`wmsync.serve_options` holds the serve options (``wmsync serve`` and
  ``python -m wmsync.emulator``);
- :class:`wmsync.repository.store.Store` is the repository itself (also usable without
  HTTP, e.g. to bulk-load benchmark data).
"""

from __future__ import annotations
