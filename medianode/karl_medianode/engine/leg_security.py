"""What protects a party's leg, as `query`, the REST API and CDRs show it (never any key)."""

from __future__ import annotations

from karl_core.session import MediaState
from karl_medianode.engine import dtls_negotiation as dtls
from karl_medianode.engine.sdes_negotiation import suite_of


def keying(media: MediaState) -> str | None:
    """How Karl keys SRTP on this leg: "dtls", "sdes", or None (plain, or SRTP relayed end to end)."""
    if dtls.terminates(media) and media.dtls_setup is not None:
        return "dtls"
    if suite_of(media) is not None:
        return "sdes"
    return None


def srtp_suite(media: MediaState) -> str | None:
    """The SRTP suite Karl uses on this leg: the agreed SDES suite, or the one the DTLS handshake
    chose once it is done."""
    if len(media.dtls_keys) == 2:
        parts = media.dtls_keys[0].split()
        return parts[1] if len(parts) > 1 else None
    return suite_of(media)
