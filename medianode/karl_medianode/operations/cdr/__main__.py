"""`python -m karl_medianode.operations.cdr`: operator tools for CDRs (docs/cdr.md).

* `load FILE...` sends JSON-lines CDR files (the CDR file, a spool segment, cdr-rejected.jsonl) to the
  database of `KARL_MYSQL_DSN` (or `--dsn`). Records already in the table are left alone, so loading a
  file twice, or one whose records partly made it already, adds each record once.
* `pending DIR` prints how many records wait in a spool directory.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from karl_medianode.operations.cdr.dsn import DsnError, parse_dsn
from karl_medianode.operations.cdr.mysqlsink import DEFAULT_TABLE, DatabaseDown, MysqlSink, row_values
from karl_medianode.operations.cdr.record import decode_record
from karl_medianode.operations.cdr.spool import Spool

BATCH = 200


async def _load_file(sink: MysqlSink, path: Path) -> tuple[int, int, int]:
    """(sent, unreadable, refused) for one file."""
    sent = invalid = refused = 0
    rows: list[tuple[Any, ...]] = []
    with open(path, "rb") as handle:
        lines = enumerate(handle, start=1)
        while True:
            for number, raw in lines:
                line = raw.rstrip(b"\r\n")
                if not line.strip():
                    continue
                try:
                    rows.append(row_values(decode_record(line), line))
                except (ValueError, RecursionError):  # also InvalidRecord
                    invalid += 1
                    if invalid <= 5:
                        print(f"{path}:{number}: not a CDR record", file=sys.stderr)
                    continue
                if len(rows) >= BATCH:
                    break
            if not rows:
                return sent, invalid, refused
            refused_rows = await sink.write(rows)
            refused += len(refused_rows)
            sent += len(rows) - len(refused_rows)
            rows.clear()


async def _load(sink: MysqlSink, paths: list[Path]) -> int:
    problems = 0
    for path in paths:
        sent, invalid, refused = await _load_file(sink, path)
        print(
            f"{path}: {sent} records sent (ones already in the table are kept once), "
            f"{invalid} unreadable, {refused} refused by the database"
        )
        problems += invalid + refused
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m karl_medianode.operations.cdr", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    load = commands.add_parser("load", help="send JSON-lines CDR files to the database")
    load.add_argument("files", nargs="+", type=Path)
    load.add_argument(
        "--dsn",
        help="database DSN (default: $KARL_MYSQL_DSN; prefer it, a password "
        "on the command line is visible to other users)",
    )
    load.add_argument("--table", default=DEFAULT_TABLE)
    pending = commands.add_parser("pending", help="records waiting in a spool directory")
    pending.add_argument("spool_dir", type=Path)
    args = parser.parse_args(argv)

    if args.command == "pending":
        print(Spool.count_waiting(args.spool_dir))
        return 0
    dsn_text = args.dsn or os.environ.get("KARL_MYSQL_DSN", "")
    try:
        dsn = parse_dsn(dsn_text)
        sink = MysqlSink(dsn, args.table)
    except (DsnError, ValueError) as exc:
        print(f"karl cdr: {exc}", file=sys.stderr)
        return 2
    for path in args.files:
        if not path.is_file():
            print(f"karl cdr: no such file: {path}", file=sys.stderr)
            return 2

    async def run() -> int:
        try:
            return await _load(sink, args.files)
        finally:
            sink.close()

    try:
        problems = asyncio.run(run())
    except DatabaseDown as exc:
        print(f"karl cdr: database {dsn.redacted()} unavailable: {exc}", file=sys.stderr)
        return 3
    except OSError as exc:
        print(f"karl cdr: cannot read {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
