"""``python -m pipereactor``: the parallel command runner (see ``pipereactor.cli``)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
