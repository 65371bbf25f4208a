"""Stream a feature group's Kafka topic into the online store: `python jobs/stream_features.py GROUP`.

Runs the group's stream worker until the job stops (`ray job submit --working-dir . -- python
jobs/stream_features.py GROUP`); a restarted job resumes from the worker's last checkpoint.
"""

import sys

from cupola.cli.features import app

if __name__ == "__main__":
    app(args=["stream", "run", *sys.argv[1:]], prog_name="stream_features")
