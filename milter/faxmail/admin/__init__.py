"""The `faxmail` command: policy check, dry-run, sendfax, and the job commands (jobs, show,
cancel, resend, stats)."""
