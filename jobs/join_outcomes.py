"""Outcome join: `python jobs/join_outcomes.py NAME [--hours 24] [--version production]`.

Reads the model's label events from the datalake (its `training_data.labels`) and stores them as
outcomes keyed by the spec's `monitoring.outcome_keys`; live metrics join them with the sampled
predictions. Safe to run on a schedule with overlapping ranges. Also runs under
`ray job submit --working-dir . -- python jobs/join_outcomes.py ...`.
"""

import sys

from cupola.cli.main import app

if __name__ == "__main__":
    app(args=["outcomes", "join", *sys.argv[1:]], prog_name="join_outcomes")
