"""The Authentication-Results header (RFC 8601) we add to accepted fax mail."""

from __future__ import annotations

import authres

from faxmail.outbound.authenticate import Identity


def authentication_results(authserv_id: str, identity: Identity) -> str:
    """The header's value (without the name), saying how the sender was authenticated."""
    results: list[authres.BaseAuthenticationResult] = []
    if identity.dkim is not None:
        results.append(
            authres.DKIMAuthenticationResult(
                result="pass", header_d=identity.dkim.domain, header_s=identity.dkim.selector
            )
        )
    if identity.proof == "sasl" and identity.entry.sasl_user:
        results.append(
            authres.SMTPAUTHAuthenticationResult(result="pass", smtp_auth=identity.entry.sasl_user)
        )
    if identity.proof == "network":
        results.append(authres.NoneAuthenticationResult())
    header = str(authres.AuthenticationResultsHeader(authserv_id=authserv_id, results=results))
    return header.removeprefix("Authentication-Results: ")
