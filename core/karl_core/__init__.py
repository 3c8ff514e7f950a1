"""Karl's shared core: NG protocol codec, SDP model, session model, config models."""

__version__ = "0.1.0"
