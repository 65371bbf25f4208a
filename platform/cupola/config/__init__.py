"""Typed settings: the one place cupola reads its environment."""

from cupola.config.settings import Settings, SettingsError

__all__ = ["Settings", "SettingsError"]
