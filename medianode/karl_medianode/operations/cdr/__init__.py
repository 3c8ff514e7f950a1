"""Call detail records: one record per finished call, to a JSON-lines file and to MySQL/MariaDB.

Wire it into a node with `CdrWriter` (see docs/cdr.md); the parts are usable on their own:
`record` (building and encoding a record, sans-IO), `dsn` (parsing the database DSN), `spool` (the
durable queue in front of the database), `filesink` and `mysqlsink`.
"""

from karl_medianode.operations.cdr.dsn import DsnError, MysqlDsn, parse_dsn
from karl_medianode.operations.cdr.record import build_record, decode_record, encode_record
from karl_medianode.operations.cdr.writer import CdrCounters, CdrWriter

__all__ = [
    "CdrCounters",
    "CdrWriter",
    "DsnError",
    "MysqlDsn",
    "build_record",
    "decode_record",
    "encode_record",
    "parse_dsn",
]
