"""The prediction application for `serve run` / `serve deploy` (see cluster/serve.yaml).

`serve run serve_apps.predict:build_app data_root=/shared/lake` or through the config file.
"""

from cupola.serving.app import build_app

__all__ = ["build_app"]
