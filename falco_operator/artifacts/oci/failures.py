"""Why a pull fails, and what a failure means for the content the same source resolved to before.

A source that was resolved before (a tag followed at its refresh, the digest the cache remembers after an agent
restart) and fails now is either kept or withdrawn, by the failure's reason:

- *passing* failures keep it: the registry could not be asked or did not answer (it may next time);
- *refused content* keeps it too: what the source names now is refused (a moved tag's new manifest, layer or
  config, or a layer or config the registry does not have: only a manifest's 404 says the tag is gone), as an
  invalid new generation keeps the last good files;
- *definitive* failures withdraw it: the registry says the content is gone (the tag or repository deleted), or
  the agent's own rules refuse to ask it (a Secret not for this registry, an address the guard refuses,
  credentials that would go without TLS). Each is someone's deliberate act, and serving the content on would go
  against it; the failure is retried like any other, and the content comes back once the source resolves again.

A registry's 401 or 403 keeps the content: registry credentials lapse on their own (short-lived tokens, rotated
passwords), and withdrawing every node's rules because a token expired would blind the cluster until someone
notices; the status says the refresh fails (``refreshProblem``, ``ResolvedRefs=False``) meanwhile.

A reason not listed here (an unforeseen error in the agent) never withdraws anything.
"""

from __future__ import annotations

CONFIG_UNREADABLE = "ConfigUnreadable"
"""The reason of an artifact config that can never be read (over the cap, not a JSON object): its digest is in a
digest-checked manifest, so the verdict holds for that manifest."""


class PullFailed(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


PASSING = frozenset({
    "Timeout",           # no answer in time (a request, or the whole pull)
    "Unreachable",       # no connection
    "RegistryError",     # any other status: 5xx, 429, ...
    "SecretNotFound",    # the agent could not ask: the Secret is missing (deleted and being recreated, say)
    "SecretNotGranted",  # ... the operator grants Secrets at its reconciles, and never watches them
    "InvalidSecret",     # ... the Secret cannot be read as credentials (an edit in progress)
    "Unauthorized",      # the registry refuses the credentials, or asks for some (401): tokens lapse
    "Forbidden",         # the registry denies access (403): as above
    "VerificationKeyUnavailable",  # a verification key (ConfigMap, Secret) missing, not granted or malformed
    "PolicyUnreadable",  # the agent cannot read its Falco's artifactVerification: it cannot tell what to check
    "UntrustedCertificate",  # the CA for the host is missing or rotated ahead of the registry: the agent's trust
    "RegistryCAUnusable",    # ... its CA bundle file is absent or no PEM (a ConfigMap or key missing, being edited)
})  # fmt: skip
"""The registry could not be asked, did not answer, or refused credentials that may lapse on their own: nothing
says that the content must go."""

REFUSED_CONTENT = frozenset({
    "DigestMismatch", "InvalidManifest", "TooLarge", "RefusedArchive", "NoPlatform", "WrongMediaType",
    "ConfigUnreadable",
    "BlobNotFound",  # a layer or config the manifest names is missing (404): the tag still names that manifest
    "SignatureMissing",  # the digest the source names now has no cosign signature (a tag moved to unsigned content)
    "SignatureInvalid",  # ... has signatures, none by the required key for that digest
    "CertificateIdentityMismatch",  # ... keyless: a certificate of another identity or OIDC issuer
    "CertificateUntrusted",  # ... keyless: a certificate not chained to a CA of the trusted root at signing time
    "TransparencyLogUnverified",  # ... keyless: no transparency-log entry signed by a log of the trusted root
})  # fmt: skip
"""What the source names now is refused, not what it named before: that stays, as for an invalid generation."""

DEFINITIVE = frozenset({
    "NotFound",              # the registry has no such repository, tag or digest (404: deleted)
    "InsecureCredentials",   # the registry asks for credentials the agent never sends without TLS
    "InsecureTokenRealm",    # the registry sends the agent for a token over plain HTTP
    "SecretNotForRegistry",  # the Secret's owner says its credentials are not for this registry
    "RefusedAddress",        # the registry's address is one the agent never connects to
})  # fmt: skip
"""Refusals that say the content may no longer be served: what the source resolved to before is withdrawn."""

PULL_FAILURE_REASONS = PASSING | REFUSED_CONTENT | DEFINITIVE
"""Every reason a pull fails with: the artifact's references could not be resolved (``ResolvedRefs=False``)."""


def withdraws(reason: str) -> bool:
    """Whether a pull failing for ``reason`` withdraws what its source resolved to before (else it is kept)."""
    return reason in DEFINITIVE
