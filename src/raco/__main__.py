"""``python -m raco ...``: the ``raco`` command line (:func:`raco.cli.main`)."""

import sys

from raco.cli import main

if __name__ == "__main__":
    sys.exit(main())
