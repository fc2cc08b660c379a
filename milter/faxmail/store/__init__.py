"""The job store: the typed job model, the interfaces callers depend on, and the SQLite
implementation (jobs and their events, dial attempts, result claims, received faxes)."""
