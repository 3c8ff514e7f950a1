"""`python -m karl_operator ...` is `karl-operator ...`."""

from karl_operator.cli import main

raise SystemExit(main())
