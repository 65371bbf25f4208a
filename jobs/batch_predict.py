"""Batch prediction: `python jobs/batch_predict.py NAME --input PATH [--version production] [--output PATH]`.

Also runs under `ray job submit --working-dir . -- python jobs/batch_predict.py ...`: the
predictions are written to the datalake with the model, version, partition model and run id.
"""

import sys

from cupola.cli.main import app

if __name__ == "__main__":
    app(args=["predict", "batch", *sys.argv[1:]], prog_name="batch_predict")
