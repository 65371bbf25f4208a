"""Train a model spec: `python jobs/train.py SPEC.yaml [--run-id ID]`.

Also runs under `ray job submit --working-dir . -- python jobs/train.py SPEC.yaml`; the run
appears in the Ray dashboard as a job, and re-submitting with the same --run-id resumes it.
"""

import sys

from cupola.cli.main import app

if __name__ == "__main__":
    app(args=["train", *sys.argv[1:]], prog_name="train")
