"""``python -m hpsearch``: the command line."""

import sys

from hpsearch.scripts.cli import main

sys.exit(main())
