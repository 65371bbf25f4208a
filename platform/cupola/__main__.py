"""`python -m cupola ...` = the `cupola` command (what Ray jobs submitted by the control plane run)."""

from cupola.cli.main import app

app(prog_name="cupola")
