"""The outbound queue: faxmail, not Asterisk, decides when each accepted fax is dialled.

Pure decisions only (no clock, file, socket or store here): `schedule.plan` (which calls to
place now), `retry.next_attempt` (when to call again, with which fallback), `quiet` (quiet
hours), `sendlater` (a "[at 18:30]" Subject tag). It may import faxmail.core and faxmail.store
model types. Its callers: the dispatcher (outbound/dispatch.py, run by daemon/dispatchloop.py),
notify after each call (notify/nextcall.py), the milter for send-later.

The dispatcher that calls them:
- Where: a thread of faxmail-milter, one per host, started after the milter's start-up
  repair. The milter already owns Asterisk's spool and settles what a crash left there before
  it takes mail; a second service would have to share that repair (or race it) and would be
  one more unit to install, start and watch, while README's one command still runs the whole
  gateway. The thread does no work for the SMTP dialogue (the 250 never waits for it) and
  nothing in it blocks libmilter. The price: stopping the milter pauses dialling (calls in
  flight go on; jobs wait, they do not fail), which Postfix's tempfail covers for new mail.
- Claims: the job store, not the file system, says who dials what. A dispatcher stages the
  call file named by job and round (MaxRetries: 0), claims that round in one transaction (a
  row with its host and a lease; on PostgreSQL later SELECT ... FOR UPDATE SKIP LOCKED), then
  renames the file into outgoing/; a restart after kill -9 finds the claim and the staged file
  and never dials twice. Calls in flight are rows too, so several hosts, each with its own
  dispatcher, plan against all lines' channels through the shared store.
- Waking: notify, having recorded a call's end and decided the next step, pokes the dispatcher
  (a datagram on `<state_dir>/dispatch.sock`, outbound/wake.py; LISTEN/NOTIFY later); it also
  sleeps until `schedule.next_due` and at most a few seconds, so a lost poke only delays,
  never strands, a job.
"""
