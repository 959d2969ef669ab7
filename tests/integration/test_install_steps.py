"""The documented install step works, and the Dockerfile, README and compose file agree with it.

Docker cannot run on these machines, so the image is checked through what it is made of: its
install step is the README's (docs/install-steps.txt, run here for real in a fresh virtual
environment), its health check is run against the real bot's endpoint, and the compose file's
variables are real settings.

The step installs every dependency from the lock files with `--require-hashes`: running it
for real proves the lock resolves, installs and matches its hashes (tests/unit/test_lock.py
proves the lock agrees with pyproject.toml).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from config.settings import Settings, setting_name
from sandbox.synapse import free_port
from tests.integration.conftest import StartBot

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
INSTALL_STEPS = ROOT / "docs" / "install-steps.txt"
PIP_GUARD_SECONDS = 300  # a hung package index fails the test instead of hanging the suite


def documented_install_step() -> str:
    steps = [
        line.strip()
        for line in INSTALL_STEPS.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert len(steps) == 1, f"one install command expected in {INSTALL_STEPS}, got {steps}"
    return steps[0]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, arguments = line.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def _clean_env(**extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TCHAP_BOT_", "MISTRAL_", "PIP_", "VIRTUAL_ENV", "PYTHONPATH"))
    }
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env.update(extra)
    return env


def _copy_project(destination: Path) -> Path:
    """The sources a user would have after cloning: the step must not touch the repository."""
    destination.mkdir()
    for name in ("pyproject.toml", "README.md", "requirements.lock", "requirements-build.lock"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, destination / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in ("bot", "commands", "config"):
        shutil.copytree(ROOT / package, destination / package, ignore=ignore)
    return destination


# --- the documented step, for real --------------------------------------------------------------


def test_documented_install_step_gives_a_working_tchap_bot(tmp_path: Path) -> None:
    step = documented_install_step()
    assert "--require-hashes -r requirements.lock" in step
    project = _copy_project(tmp_path / "tchap-bot")
    subprocess.run(
        ["bash", "-c", step],
        cwd=project,
        env=_clean_env(PIP_QUIET="1"),
        check=True,
        timeout=PIP_GUARD_SECONDS,
    )
    venv = project / ".venv"
    python = venv / "bin" / "python"
    site_packages = next((venv / "lib").glob("python3*/site-packages"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    located = subprocess.run(
        [
            str(python),
            "-c",
            "import bot, commands, config; print(bot.__file__, commands.__file__, config.__file__)",
        ],
        cwd=elsewhere,
        env=_clean_env(),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()
    assert all(path.startswith(str(site_packages)) for path in located), located
    assert (site_packages / "bot" / "store" / "migrations" / "0001_initial.sql").is_file(), (
        "package data"
    )
    assert (site_packages / "config" / "system_prompt.md").is_file(), "package data"

    tchap_bot = venv / "bin" / "tchap-bot"
    shown = subprocess.run(
        [str(tchap_bot), "--help"],
        cwd=elsewhere,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    for command in (
        "run",
        "export-data",
        "purge-user",
        "sandbox",
        "doctor",
        "reset-session",
        "healthcheck",
    ):
        assert command in shown.stdout

    refused = subprocess.run(
        [str(tchap_bot), "run"],
        cwd=elsewhere,
        env=_clean_env(
            TCHAP_BOT_HOMESERVER="pas-une-url",
            TCHAP_BOT_USER_ID="@assistant:localhost",
            TCHAP_BOT_PASSWORD="mot-de-passe-secret",
            TCHAP_BOT_DATA_DIR=str(tmp_path / "data"),
            MISTRAL_API_KEY="cle-secrete-mistral",
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stderr
    assert "TCHAP_BOT_HOMESERVER" in lines[0]
    assert "mot-de-passe-secret" not in refused.stderr and "cle-secrete" not in refused.stderr
    assert not (tmp_path / "data").exists(), "nothing is started with a bad configuration"

    installed = subprocess.run(
        [str(python), "-m", "pip", "freeze", "--all"],
        env=_clean_env(),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    pins = {
        line.split("==")[0].lower().replace("_", "-"): line.split("==")[1]
        for line in installed.splitlines()
        if "==" in line
    }
    locked = re.findall(
        r"^([a-z0-9][a-z0-9._-]*)==(\S+)", (ROOT / "requirements.lock").read_text(), re.MULTILINE
    )
    for name, version in locked:
        assert pins.get(name.lower().replace("_", "-")) == version, f"{name} not as locked"


# --- the Dockerfile, the README and compose agree ------------------------------------------------


def test_dockerfile_installs_with_the_documented_step() -> None:
    runs = [arguments for keyword, arguments in dockerfile_instructions() if keyword == "RUN"]
    assert documented_install_step() in runs, runs


def test_readme_shows_the_documented_install_step() -> None:
    readme = ROOT / "README.md"
    assert readme.is_file(), "README.md is missing (pyproject.toml's readme points at it)"
    assert documented_install_step() in readme.read_text(encoding="utf-8")


def test_dockerfile_runtime_contract() -> None:
    instructions = dockerfile_instructions()
    keywords = [keyword for keyword, _ in instructions]
    values = dict(instructions)  # last of each kind
    assert instructions[0] == ("FROM", "python:3.11-slim")
    user = values["USER"]
    assert user.isdigit() and int(user) != 0, "a numeric non-root user (runAsNonRoot checks it)"
    assert keywords.index("USER") > max(
        index for index, (keyword, _) in enumerate(instructions) if keyword == "RUN"
    ), "USER comes after the last RUN (installing needs root, running does not)"
    assert values["VOLUME"] == "/data"
    env = image_environment()
    assert env["TCHAP_BOT_DATA_DIR"] == "/data" and env["HOME"] == "/data"
    assert env["TCHAP_BOT_HEALTH_HOST"] == "0.0.0.0", "probes reach the bot from outside"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1", "nothing written outside /data (read-only root)"
    assert json.loads(values["CMD"]) == ["tchap-bot", "run"]
    assert healthcheck_argv() == ["tchap-bot", "healthcheck"]


def image_environment() -> dict[str, str]:
    pairs: dict[str, str] = {}
    for keyword, arguments in dockerfile_instructions():
        if keyword == "ENV":
            for item in arguments.split():
                name, _, value = item.partition("=")
                pairs[name] = value
    return pairs


def healthcheck_argv() -> list[str]:
    arguments = dict(dockerfile_instructions())["HEALTHCHECK"]
    command: list[str] = json.loads(arguments[arguments.index("CMD") + len("CMD") :].strip())
    return command


async def _healthcheck(**env: str) -> int:
    """The image's HEALTHCHECK command with the image's environment plus `env`."""
    argv = healthcheck_argv()
    assert argv[0] == "tchap-bot"
    image_env = {k: v for k, v in image_environment().items() if k.startswith("TCHAP_BOT_HEALTH")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *argv[1:],
        cwd=ROOT,
        env=_clean_env(**{**image_env, **env}, HTTP_PROXY="http://127.0.0.1:9"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    return await asyncio.wait_for(process.wait(), 60)


async def test_healthcheck_follows_the_configured_port_and_fails_without_the_bot(
    start_bot: StartBot,
) -> None:
    port = free_port()
    bot = await start_bot(health_port=port, health_host="0.0.0.0")
    assert await _healthcheck(TCHAP_BOT_HEALTH_PORT=str(port)) == 0
    assert await _healthcheck(TCHAP_BOT_HEALTH_PORT=str(free_port())) != 0, "another port"
    await bot.stop()
    assert await _healthcheck(TCHAP_BOT_HEALTH_PORT=str(port)) != 0


def test_compose_uses_real_settings_and_local_ports() -> None:
    compose: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    services = compose["services"]
    bot = services["bot"]
    assert bot["build"] == "."
    known = {setting_name(name) for name in Settings.model_fields}
    for variable in bot["environment"]:
        assert variable in known, f"{variable} is not a setting the bot reads"
    assert bot["environment"]["TCHAP_BOT_HOMESERVER"] == "http://synapse:8008"
    assert services["synapse"]["image"].startswith("matrixdotorg/synapse")
    for port in services["synapse"]["ports"]:
        assert re.match(r"127\.0\.0\.1:\d+:\d+$", port), "trial ports stay on this machine"
