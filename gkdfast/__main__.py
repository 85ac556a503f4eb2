"""``python -m gkdfast``: the ``gkdfast`` command (:func:`gkdfast.cli.main`)."""
import sys

from gkdfast.cli import main

if __name__ == "__main__":
    sys.exit(main())
