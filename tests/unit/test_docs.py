"""The README and the example config stay true to the settings model."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from config.reference import EXAMPLE_FILE, settings_reference_markdown
from config.settings import ConfigError, Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_readme_settings_table_is_generated_from_the_model() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(
        r"<!-- settings:start[^>]*-->\n(.*?)\n<!-- settings:end -->", readme, re.DOTALL
    )
    assert match is not None, "README lost its settings markers"
    assert match.group(1) == settings_reference_markdown(), "run `python -m config.reference`"


def test_example_config_names_every_setting_and_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    text = EXAMPLE_FILE.read_text(encoding="utf-8")
    for name in Settings.model_fields:
        assert re.search(rf"^#? ?{name} = ", text, re.MULTILINE), name
    tomllib.loads(text)
    for variable in ("MISTRAL_API_KEY", "MISTRAL_SERVER_URL"):
        monkeypatch.delenv(variable, raising=False)
    # Its placeholder secrets are refused, naming each setting, never echoing a value.
    with pytest.raises(ConfigError) as refused:
        load_settings(EXAMPLE_FILE)
    lines = str(refused.value).splitlines()
    assert len(lines) == 2, lines
    assert "TCHAP_BOT_PASSWORD" in lines[0] and "MISTRAL_API_KEY" in lines[1]
    assert all("valeur d'exemple" in line for line in lines)
    settings = load_settings(EXAMPLE_FILE, password="un-vrai-secret", mistral_api_key="cle-reelle")
    assert settings.allowed_users == ["@*:agent.*.tchap.gouv.fr"]


def test_readme_gives_the_test_command_that_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "make test" in readme and "exec make test" in ci
