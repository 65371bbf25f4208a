"""Training-serving skew: `python jobs/skew.py NAME [--hours 24]`.

Recomputes the store features of the model's sampled predictions from the offline store as of each
request and records where they differ from what was served (`cupola_feature_skew`). Safe to run on a
schedule, like the outcome join; also runs under `ray job submit --working-dir . -- python jobs/skew.py ...`.
"""

import sys

from cupola.cli.main import app

if __name__ == "__main__":
    app(args=["skew", *sys.argv[1:]], prog_name="skew")
