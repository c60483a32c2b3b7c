"""``python -m node.cli``: the same CLI as the ``tripwire`` console script."""

import sys

from node.cli import main

sys.exit(main())
