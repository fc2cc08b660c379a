"""`faxmail web`: the read-only status page over the job store (queue, jobs, received faxes)."""
