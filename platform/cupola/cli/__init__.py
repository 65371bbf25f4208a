"""The `cupola` command."""
