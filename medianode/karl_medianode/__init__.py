"""Karl's media node: NG server, call engine, port allocation and the RTP relay."""
