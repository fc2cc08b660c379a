"""What every part shares: SMTP replies, the session, documents, settings, policy, YAML,
sandboxed subprocesses, exit codes, durable writes. Imports nothing else of faxmail."""
