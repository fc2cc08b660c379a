"""The outbound queue: faxmail, not Asterisk, decides when each accepted fax is dialled.

Pure decisions only (no clock, file, socket or store here): `schedule.plan` (which calls to
place now), `retry.next_attempt` (when to call again, with which fallback), `quiet` (quiet
hours), `sendlater` (a "[at 18:30]" Subject tag). It may import faxmail.core and faxmail.store
model types; nothing but tests imports it yet.

Design note for the dispatcher that will call them:
- Where: its own small service (faxmail-dispatch, a systemd unit), not a thread of
  faxmail-milter. It must run next to Asterisk (call files are local to Asterisk's spool),
  while milters may run on every MX host; it must keep dialling while Postfix or the milter is
  stopped or restarted, and a milter fault (a renderer eating memory, libmilter's signal
  handling) must not stop the phone line. One more unit is the price; it shares the library.
- Claims: the job store, not the file system, says who dials what. A dispatcher claims a due
  attempt in one transaction (a row with its host, attempt number and a lease it renews;
  on PostgreSQL SELECT ... FOR UPDATE SKIP LOCKED), then writes the call file named by job and
  attempt (MaxRetries: 0), so that a restart after kill -9 finds the claim, checks outgoing/
  and outgoing_done/ for that one name and never dials twice. Calls in flight are rows too, so
  every dispatcher plans against all lines' channels, not just its own.
- Waking: notify, having recorded a call's end in the store, pokes the dispatcher (a datagram
  on its unix socket; LISTEN/NOTIFY later); it also sleeps until `schedule.next_due` and at
  most a short interval, so a lost poke only delays, never strands, a job.
"""
