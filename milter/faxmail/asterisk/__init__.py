"""Asterisk's side of the files: call files, the spool folders and their names, taking a call
file back."""
