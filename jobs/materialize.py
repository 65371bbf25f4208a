"""Materialize feature groups to the online store: `python jobs/materialize.py [GROUP ...]`.

Also runs under `ray job submit --working-dir . -- python jobs/materialize.py`.
"""

import sys

from cupola.cli.features import app

if __name__ == "__main__":
    app(args=["materialize", *sys.argv[1:]], prog_name="materialize")
