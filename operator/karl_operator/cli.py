"""Entry point of `karl-operator` (not implemented yet)."""

import sys


def main() -> int:
    print("karl-operator: the operator is not implemented yet", file=sys.stderr)
    return 2
