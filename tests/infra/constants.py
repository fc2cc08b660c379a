"""What many tests share: the fax addresses and the policy the through-Postfix tests start from."""

from __future__ import annotations

#: The fax domain of the test policies.
FAX_DOMAIN = "example.jp"
#: A fax address as staff write it (dashes are allowed and dropped).
FAX = "fax+03-1234-5678@example.jp"
#: The same number written as digits only.
FAX_DIGITS = "fax+0312345678@example.jp"

#: Any sender of the fax domain may fax, proven by DKIM (the default proof); append `limits:`,
#: `fax:` and other sections as a test needs.
BASE_POLICY = """\
fax_address: {domains: [example.jp]}
senders:
  - address: "@example.jp"
"""
