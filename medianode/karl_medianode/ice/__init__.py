"""ICE (RFC 8445) on Karl's own media sockets, sans-IO: credentials, Karl's candidates and the agent
that answers and sends connectivity checks. STUN messages are read and written with `aioice.stun`."""
