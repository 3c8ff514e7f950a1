"""Entry point of `karl-router` (not implemented yet)."""

import sys


def main() -> int:
    print("karl-router: the NG router is not implemented yet", file=sys.stderr)
    return 2
