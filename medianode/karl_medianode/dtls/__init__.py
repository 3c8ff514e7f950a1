"""DTLS-SRTP (RFC 5763/5764) on Karl's media sockets, sans-IO: the fleet's certificate and its
fingerprints, and one handshake per leg over memory BIOs whose exported keys key SRTP."""
