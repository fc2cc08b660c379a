"""Keep the last good policy in force while the admin edits the file."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from faxmail.core.policy import DEFAULT_POLICY_YAML, Policy
from faxmail.core.yamlfile import ConfigError, load_yaml, parse_yaml

log = logging.getLogger("faxmail.policy")

_CHECK_EVERY_S = 1.0  # at most one stat() per second, and only on fax mail


class PolicyHolder:
    """The policy in force. `current()` notices file changes; `reload()` is for SIGHUP."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._checked = 0.0
        if path is None or not path.exists():
            # Starting without a policy file is fine; an unreadable or invalid one is not.
            self._policy = parse_yaml(DEFAULT_POLICY_YAML, Policy, "<embedded default>")
            self.source = "<embedded default>"
        else:
            self._stamp = self._stat()
            self._policy = load_yaml(path, Policy)  # invalid → ConfigError: refuse to start
            self.source = str(path)

    @classmethod
    def fixed(cls, policy: Policy, source: str) -> PolicyHolder:
        """A holder that never reloads (one-shot commands that adjust the policy)."""
        holder = cls(None)
        holder._policy = policy
        holder.source = source
        return holder

    def _stat(self) -> tuple[int, int, int] | None:
        assert self.path is not None
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def current(self) -> Policy:
        now = time.monotonic()
        if self.path is not None and now - self._checked >= _CHECK_EVERY_S:
            self._checked = now
            if self._stat() != self._stamp:
                self.reload()
        return self._policy

    def reload(self) -> bool:
        """Read the file again; keep the old policy on any problem. True if a new one applies."""
        if self.path is None:
            return False
        with self._lock:
            stamp = self._stat()
            self._stamp = stamp
            if stamp is None:
                log.error("policy file %s is gone; keeping the last good policy", self.path)
                return False
            if stamp[1] == 0:
                # An empty file would load as the embedded default (nobody may fax): far more
                # likely a save in progress or a truncation by accident than the admin's intent.
                log.error("policy file %s is empty; keeping the last good policy", self.path)
                return False
            try:
                policy = load_yaml(self.path, Policy)
            except ConfigError as exc:
                for problem in exc.problems:
                    log.error("policy %s: %s; keeping the last good policy", self.path, problem)
                return False
            self._policy = policy
            self.source = str(self.path)
            log.info("policy %s loaded: %d sender entries", self.path, len(policy.senders))
            return True
