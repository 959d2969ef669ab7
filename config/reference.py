"""The settings reference, generated from the model so the README cannot drift from the code.

`python -m config.reference` prints the Markdown table the README embeds; a test checks the
README holds exactly this table and that `config/example.toml` names every setting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic_core import PydanticUndefined

from config.settings import Settings, setting_name

EXAMPLE_FILE = Path(__file__).with_name("example.toml")
REQUIRED = "**obligatoire**"


def _default(field: Any) -> str:
    value = field.default_factory() if field.default_factory is not None else field.default
    if value is PydanticUndefined:
        return REQUIRED
    if value is None:
        return "—"
    if isinstance(value, SecretStr):
        return "—"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, list):
        return f"`{','.join(value)}`" if value else "—"
    return f"`{value}`"


def settings_reference_markdown() -> str:
    lines = [
        "| TOML key | environment variable | default | meaning |",
        "| --- | --- | --- | --- |",
    ]
    for name, field in Settings.model_fields.items():
        description = (field.description or "").replace("|", "\\|")
        lines.append(f"| `{name}` | `{setting_name(name)}` | {_default(field)} | {description} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(settings_reference_markdown())
