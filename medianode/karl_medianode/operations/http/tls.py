"""TLS for the HTTP ports: one server context from `security.tls_cert` / `security.tls_key`."""

from __future__ import annotations

import ssl

from karl_core.config.sections import SecuritySection
from karl_core.runtime import StartupError


def server_context(security: SecuritySection) -> ssl.SSLContext | None:
    """None when no certificate is configured (plain HTTP); TLS 1.2 or newer otherwise."""
    if not security.tls_cert:
        return None
    for path, variable in ((security.tls_cert, "KARL_TLS_CERT"), (security.tls_key, "KARL_TLS_KEY")):
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise StartupError(f"cannot read the TLS file {path} ({variable}): {exc.strerror}") from None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(security.tls_cert, security.tls_key)
    except (ssl.SSLError, OSError) as exc:
        # Only the library's reason: never file contents (the private key stays out of the log).
        reason = getattr(exc, "reason", None) or "not a matching PEM certificate and key"
        raise StartupError(
            f"cannot use the TLS certificate {security.tls_cert} with the key {security.tls_key} "
            f"(KARL_TLS_CERT / KARL_TLS_KEY): {reason}"
        ) from None
    return context
