"""The job store: jobs, their history, dial attempts, result mails and received faxes.

`model.py` holds the typed values (job states and event kinds as enums), `interface.py` the
protocols callers depend on (`JobStore`, `NotifyStore`, `JobQueries`, `AdminStore`),
`errors.py` the errors both implementations raise, `choose.py` which one the settings name:
`sqlite.py` with `sqlite_schema.py` and `sqlite_queries.py` the SQLite implementation (one
host, the default), `postgres.py` with its `postgres_*.py` the PostgreSQL one (several hosts).
"""
