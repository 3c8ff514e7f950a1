"""The data plane: media sockets and ports, the relay (the hot path) and the stages packets may go through."""
