"""Settings precedence, validation, and the documentation of every setting."""

import os
import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from thumbproxy.config import SETTINGS, Settings, SettingsError, load_settings

REPO = Path(__file__).resolve().parent.parent
CONFIG_FILE = REPO / "config" / "thumbproxy.toml"


def test_defaults_match_the_existing_service() -> None:
    settings = load_settings(env={}, config_file=None)
    assert settings.port == 8080 and settings.host == "0.0.0.0"
    assert settings.max_size == 2000
    assert settings.required_frame_validation_keys == ("configuration_type", "request_id", "filename")
    assert settings.valid_configuration_types_for_color_thumbs == ("EXPOSE", "STANDARD")
    assert "EXPOSE" in settings.valid_configuration_types and "CATALOG" not in settings.valid_configuration_types


def test_cli_beats_environment_beats_file_beats_default(tmp_path: Path) -> None:
    config = tmp_path / "t.toml"
    config.write_text("port = 7000\nmax_size = 900\ncache_size_mb = 5\n")
    env = {"THUMBPROXY_PORT": "7100", "THUMBPROXY_MAX_SIZE": "800"}
    settings = load_settings(cli={"port": "7200"}, env=env, config_file=config)
    assert settings.port == 7200
    assert settings.max_size == 800
    assert settings.cache_size_mb == 5


def test_config_file_named_by_environment(tmp_path: Path) -> None:
    config = tmp_path / "other.toml"
    config.write_text('archive_api_url = "http://archive.example:9000/api"\n')
    settings = load_settings(env={"THUMBPROXY_CONFIG": str(config)})
    # The existing service joins endpoints onto it, so a missing slash is added once.
    assert settings.archive_api_url == "http://archive.example:9000/api/"


def test_comma_separated_lists_from_environment() -> None:
    env = {"VALID_CONFIGURATION_TYPES": "expose, skyflat,", "REQUIRED_FRAME_VALIDATION_KEYS": "filename"}
    settings = load_settings(env=env)
    assert settings.valid_configuration_types == ("EXPOSE", "SKYFLAT")
    assert settings.required_frame_validation_keys == ("filename",)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"THUMBPROXY_PORT": "eighty"}, "THUMBPROXY_PORT"),
        ({"THUMBPROXY_PORT": "70000"}, "THUMBPROXY_PORT"),
        ({"THUMBPROXY_WORKERS": "0"}, "THUMBPROXY_WORKERS"),
        ({"THUMBPROXY_ARCHIVE_TIMEOUT": "-1"}, "THUMBPROXY_ARCHIVE_TIMEOUT"),
        ({"THUMBPROXY_ARCHIVE_TIMEOUT": "nan"}, "THUMBPROXY_ARCHIVE_TIMEOUT"),
        ({"ARCHIVE_API_URL": "ftp://x/"}, "ARCHIVE_API_URL"),
        ({"THUMBPROXY_PUBLIC_URL": "not a url"}, "THUMBPROXY_PUBLIC_URL"),
        ({"THUMBPROXY_LOG_LEVEL": "loud"}, "THUMBPROXY_LOG_LEVEL"),
        ({"THUMBPROXY_COLOR_FILTERS": "R,rp;V"}, "THUMBPROXY_COLOR_FILTERS"),
        ({"THUMBPROXY_COLOR_FILTERS": "R;;B"}, "THUMBPROXY_COLOR_FILTERS"),
        ({"THUMBPROXY_CORS_ORIGIN": "dashboards.example.org"}, "THUMBPROXY_CORS_ORIGIN"),
        ({"THUMBPROXY_CORS_ORIGIN": "https://a.example\r\nSet-Cookie: x=1"}, "THUMBPROXY_CORS_ORIGIN"),
    ],
)
def test_bad_value_names_the_setting(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        load_settings(env=env)


def test_choice_settings_take_any_case_and_name_their_choices() -> None:
    env = {
        "THUMBPROXY_LOG_LEVEL": " warning",
        "THUMBPROXY_LOG_FORMAT": "JSON",
        "THUMBPROXY_S3_ADDRESSING_STYLE": "Path",
    }
    settings = load_settings(env=env)
    assert (settings.log_level, settings.log_format, settings.s3_addressing_style) == ("WARNING", "json", "path")
    for name, message in (
        ("THUMBPROXY_LOG_LEVEL", "must be one of DEBUG, INFO, WARNING, ERROR"),
        ("THUMBPROXY_LOG_FORMAT", "must be text or json"),
        ("THUMBPROXY_S3_ADDRESSING_STYLE", "must be one of auto, virtual, path"),
    ):
        with pytest.raises(SettingsError, match=message):
            load_settings(env={name: "loud"})


def test_unknown_or_missing_config_file_is_an_error(tmp_path: Path) -> None:
    config = tmp_path / "t.toml"
    config.write_text("prot = 80\n")
    with pytest.raises(SettingsError, match="prot"):
        load_settings(env={}, config_file=config)
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(env={"THUMBPROXY_CONFIG": str(tmp_path / "missing.toml")})


def test_bad_setting_exits_non_zero_with_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "thumbproxy", "serve", "--port", "0x50"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "THUMBPROXY_PORT" in result.stderr


def test_colour_filters_are_three_groups() -> None:
    settings = load_settings(env={"THUMBPROXY_COLOR_FILTERS": "ip, zs; rp; gp"})
    assert settings.color_filters == (("ip", "zs"), ("rp",), ("gp",))


def test_secrets_stay_out_of_repr() -> None:
    settings = load_settings(env={"AWS_SECRET_ACCESS_KEY": "s3cr3t-value"})
    assert "s3cr3t-value" not in repr(settings)


def test_a_rejected_signing_key_is_not_repeated() -> None:
    with pytest.raises(SettingsError) as error:
        load_settings(env={"THUMBPROXY_SIGNING_KEY": "good-key-of-enough-length,hunter2"}, config_file=os.devnull)
    assert "THUMBPROXY_SIGNING_KEY" in str(error.value) and "hunter2" not in str(error.value)
    settings = load_settings(
        env={"THUMBPROXY_SIGNING_KEY": "k1-of-enough-length, k2-of-enough-length"}, config_file=os.devnull
    )
    assert settings.signing_keys == ("k1-of-enough-length", "k2-of-enough-length")


def test_every_setting_is_a_settings_field() -> None:
    assert [setting.field for setting in SETTINGS] == [f.name for f in fields(Settings)]


def test_config_file_documents_every_setting_with_its_default(tmp_path: Path) -> None:
    text = CONFIG_FILE.read_text()
    # Uncommenting the documented lines must give a valid file whose values are the real defaults.
    uncommented = "\n".join(line[2:] for line in text.splitlines() if re.match(r"# [a-z_]+ = ", line))
    documented = tmp_path / "documented.toml"
    documented.write_text(uncommented)
    from_file = load_settings(env={}, config_file=documented)
    defaults = load_settings(env={}, config_file=None)
    for setting in SETTINGS:
        assert f"Env {setting.env}" in text, setting.env
        if setting.field not in ("cache_dir", "workers"):
            assert getattr(from_file, setting.field) == getattr(defaults, setting.field), setting.field
