"""`python -m karl_medianode` runs one media node (same as the `karl` command)."""

import sys

from karl_medianode.cli import main

sys.exit(main())
