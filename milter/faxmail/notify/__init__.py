"""faxmail-notify: what Asterisk's dialplan calls through System() — fax events into mail.

It records each attempt in the job store, claims the one result mail per job, and spools every
mail (and received TIFF) in its outbox before handing it to the mail system.
"""
