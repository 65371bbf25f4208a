"""Build feature groups: `python jobs/build_features.py [GROUP ...] [--start D] [--end D]`.

Also runs under `ray job submit --working-dir . -- python jobs/build_features.py`; settings
come from CUPOLA_* variables (pass them with --runtime-env-json '{"env_vars": {...}}').
"""

import sys

from cupola.cli.features import app

if __name__ == "__main__":
    app(args=["build", *sys.argv[1:]], prog_name="build_features")
