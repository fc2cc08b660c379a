"""Exit statuses of our commands: the sysexits(3) values Postfix's pipe(8) and scripts know.

pipe(8) turns EX_TEMPFAIL into a deferral (the mail is retried) and the others into a bounce;
1 is our own "not found or refused", said with a sentence on standard error.
"""

from __future__ import annotations

EX_OK = 0
EX_REFUSED = 1  # not a sysexits value: the job commands' "not found or refused"
EX_USAGE = 64
EX_DATAERR = 65
EX_NOINPUT = 66
EX_SOFTWARE = 70
EX_CANTCREAT = 73
EX_TEMPFAIL = 75
EX_NOPERM = 77
EX_CONFIG = 78
