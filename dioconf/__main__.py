"""``python3 -m dioconf``: the same command line as ``dioconf``."""

import sys

from .cli import main

sys.exit(main())
