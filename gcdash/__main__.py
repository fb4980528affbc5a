"""``python -m gcdash``: see :mod:`gcdash.cli`."""

import sys

from gcdash.cli import main

sys.exit(main())
