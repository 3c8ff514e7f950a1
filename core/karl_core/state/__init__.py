"""Where calls are kept between signalling changes: the `CallStore` interface and its implementations
(in memory, local files; Redis comes with the fleet and is the only part of `karl_core` that will import
`redis`)."""

from karl_core.state.call_store import (
    CallStore,
    MemoryCallStore,
    OwnerToken,
    SaveResult,
    StoredCall,
)
from karl_core.state.file_call_store import FileCallStore, StateDirInUse, stored_calls

__all__ = [
    "CallStore",
    "FileCallStore",
    "MemoryCallStore",
    "OwnerToken",
    "SaveResult",
    "StateDirInUse",
    "StoredCall",
    "stored_calls",
]
