"""``python -m shoprec.evaluation`` is ``shoprec eval``."""

import sys

from shoprec.cli import app

if __name__ == "__main__":
    sys.exit(app(["eval", *sys.argv[1:]]))
