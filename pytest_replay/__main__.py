"""``python -m pytest_replay``: the same command as ``pytest-replay``."""

import sys

from .review.cli import main

sys.exit(main())
