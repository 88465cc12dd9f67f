"""A Workflow Manager repository kept in SQLite, with the replication extensions' state.

Generations, element versions, node rows, the conflict log, export and import with the
merge rule: everything a repository with the WorkflowSync extensions holds. The emulator
serves one over HTTP (:mod:`wmsync.emulator`); nothing here needs werkzeug.

- :class:`wmsync.repository.store.Store` is the repository (one SQLite file);
- :class:`wmsync.repository.session.Session` is one transaction on it (nested ones are
  savepoints);
- :class:`wmsync.repository.importing.Importer` applies one document in a session, with
  :mod:`wmsync.repository.quick` as the fast reading of large documents;
- :mod:`wmsync.repository.bulk` loads many jobs at once (benchmarks);
- :mod:`wmsync.repository.merge` is the merge rule;
- :mod:`wmsync.repository.renumbering` moves a joining child's own jobs into its id
  block, and the jobs a repository that went back in time gave taken ids past them;
- :mod:`wmsync.repository.catalog` holds the default configuration every repository
  starts with.
"""
