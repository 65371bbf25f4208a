"""The control plane: a versioned HTTP API and web UI over the same library calls as the CLI.

A separate ASGI app (FastAPI under uvicorn, started by `cupola ui`), not a Serve application:
it must answer while no model is served and while Serve is being redeployed, it submits work to
the cluster through the Ray Jobs API like any client, and it binds to 127.0.0.1 unless tokens
are configured, while Serve's HTTP port is shared with the prediction endpoint.
"""
