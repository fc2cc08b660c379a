"""Integration-test infrastructure: private Postfix, dnsmasq, DKIM keys, test mail and PDFs.

Tests import it as ``from infra.postfix import PostfixInstance``: pytest's default import mode
puts tests/ on sys.path because tests/ has no __init__.py.
"""
