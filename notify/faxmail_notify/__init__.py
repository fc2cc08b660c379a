"""faxmail-notify: what Asterisk's dialplan calls through System() — fax events into mail.

Import name `faxmail_notify` (pymilter owns `milter`, `Milter` and `mime`); the shared library
(store, policy, settings, call files) is `faxmail`.
"""
