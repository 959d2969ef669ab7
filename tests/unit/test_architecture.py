"""The house keeps its shape: the architecture page lists the real modules, `run` stays lean."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("bot", "commands", "config", "sandbox")


def documented_modules() -> set[str]:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = text.split("## Modules", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([\w/]+\.py)` \|", section, re.MULTILINE))


def _only_a_docstring(path: Path) -> bool:
    body = ast.parse(path.read_text(encoding="utf-8")).body
    return all(isinstance(node, ast.Expr) for node in body)


def real_modules() -> set[str]:
    found = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            relative = path.relative_to(ROOT).as_posix()
            if path.name == "__main__.py" or _only_a_docstring(path):
                continue  # package markers hold no code to describe
            found.add(relative)
    return found


def test_architecture_module_table_matches_the_tree() -> None:
    documented, real = documented_modules(), real_modules()
    assert not real - documented, f"modules missing from docs/architecture.md: {real - documented}"
    assert not documented - real, f"docs/architecture.md lists gone modules: {documented - real}"


def _forbidden_contract_sources(forbidden: str) -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    for contract in config["tool"]["importlinter"]["contracts"]:
        if contract["type"] == "forbidden" and contract["forbidden_modules"] == [forbidden]:
            return list(contract["source_modules"])
    raise AssertionError(f"no import-linter contract forbids {forbidden}")


def _dotted(relative: str) -> str:
    return relative.removesuffix(".py").removesuffix("/__init__").replace("/", ".")


def _uncovered(allowed: tuple[str, ...], sources: list[str]) -> set[str]:
    """Modules of the bot that a contract listing its sources one by one forgets."""
    within = {"bot", "commands", "config"}
    modules = {_dotted(m) for m in real_modules() if m.split("/")[0] in within}
    return {
        module
        for module in modules
        if not any(module == s or module.startswith(s + ".") for s in (*sources, *allowed))
    }


def test_library_contracts_cover_every_module() -> None:
    """The nio and mistralai contracts name their sources (import-linter has no "everything but"):
    a new module left off the list would be free to import either library."""
    nio_free = _forbidden_contract_sources("nio")
    assert not _uncovered(("bot.matrix",), nio_free), "add them to the nio contract"
    model_client = (
        "bot.answer.llm",
        "bot.answer.llm_failures",
        "bot.answer.http_transport",
        "bot.answer.stream_pacing",
    )
    mistral_free = _forbidden_contract_sources("mistralai")
    assert not _uncovered(model_client, mistral_free), "add them to the mistralai contract"


def test_run_never_imports_the_sandbox() -> None:
    probe = (
        "import sys\n"
        "from bot import cli\n"
        "import bot.app\n"  # what `tchap-bot run` imports once its settings are valid
        "try:\n"
        "    cli.main(['run'])\n"  # no settings here: stops at the settings check (exit 2)
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(m for m in sys.modules if m == 'sandbox' or m.startswith('sandbox.')))\n"
        # Loaded with the first file, picture or voice message, not by every bot at start
        # (numpy alone is ~11 MB resident: bench/, figure 3's memory floor).
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'numpy', 'PIL', 'mutagen'}))\n"
        # The mistralai SDK is loaded once the first sync has been handled (LLMClient.prepare):
        # it then fills the heap that sync's parsing left free (bench/, figure 5).
        "from bot.answer.llm import LLMClient\n"
        "LLMClient(api_key='k', server_url='http://127.0.0.1:9', timeout_seconds=5,\n"
        "          max_retries=0, max_concurrency=1)\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'mistralai'}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "HOME": str(ROOT)},
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    sandbox_modules, heavy_libraries, sdk = result.stdout.strip().splitlines()[-3:]
    assert sandbox_modules == "[]"
    assert heavy_libraries == "[]"
    assert sdk == "[]"
