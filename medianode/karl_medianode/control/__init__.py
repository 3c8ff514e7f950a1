"""The control plane: the NG socket, the call engine, SDP rewriting and the calls' state and persistence."""
