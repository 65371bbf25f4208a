"""Settings: env, file and defaults, with clear errors naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from cupola import Settings, SettingsError


def test_defaults_are_embedded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings.load()
    assert settings.backend == "sqlite"
    assert settings.ray_address == ""
    assert settings.data_root_uri == (tmp_path / "cupola_data").as_uri()
    assert settings.resolved_online_store_path() == tmp_path / "cupola_data" / "online" / "online.db"
    assert settings.feature_repo is None  # the declarations applied to the datalake


def test_environment_overrides_file_and_file_overrides_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "cupola.yaml"
    config.write_text("data_root: s3://bucket/lake\nray_address: auto\n")
    monkeypatch.setenv("CUPOLA_CONFIG_FILE", str(config))
    monkeypatch.setenv("CUPOLA_RAY_ADDRESS", "ray://head:10001")
    settings = Settings.load()
    assert settings.data_root_uri == "s3://bucket/lake"
    assert settings.ray_address == "ray://head:10001"


def test_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUPOLA_BACKEND", "postgres")
    with pytest.raises(SettingsError, match="CUPOLA_BACKEND \\(backend\\): Input should be 'sqlite' or 'cassandra'"):
        Settings.load()


def test_unknown_keys_in_config_file_are_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "cupola.yaml"
    config.write_text("data_rot: /tmp/x\n")
    monkeypatch.setenv("CUPOLA_CONFIG_FILE", str(config))
    with pytest.raises(SettingsError, match="data_rot"):
        Settings.load()


def test_missing_config_file_and_bad_scheme(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="does not exist: create it or unset the variable"):
        Settings.load(config_file=tmp_path / "absent.yaml")
    with pytest.raises(SettingsError, match="scheme 'ftp' is not supported"):
        Settings.load(data_root="ftp://host/lake")


def test_remote_data_root_needs_a_local_online_store(tmp_path: Path) -> None:
    settings = Settings.load(data_root="s3://bucket/lake")
    with pytest.raises(SettingsError, match="CUPOLA_ONLINE_STORE_PATH"):
        settings.resolved_online_store_path()
    explicit = Settings.load(data_root="s3://bucket/lake", online_store_path=tmp_path / "online.db")
    assert explicit.resolved_online_store_path() == tmp_path / "online.db"


SECRETS = {
    "CUPOLA_CASSANDRA_PASSWORD": "pw-4a1f9c",
    "CUPOLA_API_WRITE_TOKEN": "write-77d2e0",
    "CUPOLA_API_READ_TOKEN": "read-90bb13",
    "CUPOLA_API_TOKEN": "client-5c3e88",
}


def test_cupola_config_masks_every_secret(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cupola.cli.main import app

    result = CliRunner().invoke(
        app, ["config"], env={"CUPOLA_DATA_ROOT": str(tmp_path), "CUPOLA_CASSANDRA_USERNAME": "cupola", **SECRETS}
    )
    assert result.exit_code == 0, result.output
    assert '"cassandra_username": "cupola"' in result.output  # the settings were read
    for name, secret in SECRETS.items():
        assert secret not in result.output
        assert f'"{name.removeprefix("CUPOLA_").lower()}": "**********"' in result.output


def test_secrets_are_kept_and_never_forwarded_to_workers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    settings = Settings.load(data_root=str(tmp_path), backend="cassandra", cassandra_username="cupola")
    assert settings.cassandra_password.get_secret_value() == "pw-4a1f9c"  # usable where it is needed
    assert "pw-4a1f9c" not in repr(settings) and "write-77d2e0" not in str(settings)
    forwarded = settings.for_workers()
    assert forwarded["cassandra_username"] == "cupola" and forwarded["backend"] == "cassandra"
    assert not set(SECRETS.values()) & set(forwarded.values())
    assert not {"cassandra_password", "api_write_token", "api_read_token", "api_token"} & set(forwarded)
