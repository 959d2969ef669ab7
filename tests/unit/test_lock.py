"""The lock files agree with pyproject.toml: run `make lock` when this fails.

Other changes add dependencies to pyproject.toml; the image and `make run` install only what
requirements.lock pins (with hashes), so a dependency missing from the lock would be missing at
run time. Checked: every direct dependency (and what its extras pull in) is pinned at a version
its specifier accepts; nothing is pinned "via pyproject.toml" that pyproject no longer asks for;
every pin carries hashes; the build lock satisfies [build-system]; every library the bot's
code imports is in the runtime lock.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")
HINT = "run `make lock` (pyproject.toml and requirements.lock disagree)"


def parse_lock(path: Path) -> dict[str, tuple[Version, int, set[str]]]:
    """name -> (version, number of hashes, names it is pinned for, from pip-compile's `via`)."""
    entries: dict[str, tuple[Version, int, set[str]]] = {}
    current: str | None = None
    in_via = False
    for line in path.read_text(encoding="utf-8").splitlines():
        match = PIN.match(line)
        if match:
            current = canonicalize_name(match.group(1))
            entries[current] = (Version(match.group(2)), 0, set())
            in_via = False
            continue
        stripped = line.strip()
        if current is None:
            continue
        version, hashes, via = entries[current]
        if stripped.startswith("--hash=sha256:"):
            entries[current] = (version, hashes + 1, via)
        elif stripped.startswith("# via"):
            rest = stripped.removeprefix("# via").strip()
            in_via = not rest
            if rest:
                via.add(rest)
        elif in_via and stripped.startswith("#   "):
            via.add(stripped.removeprefix("#").strip())
        elif not stripped.startswith("#"):
            in_via = False
    return entries


def pyproject() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as handle:
        return tomllib.load(handle)


def test_every_runtime_dependency_is_pinned_with_hashes_at_an_accepted_version() -> None:
    lock = parse_lock(ROOT / "requirements.lock")
    project = pyproject()["project"]
    assert isinstance(project, dict)
    for text in project["dependencies"]:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in lock, f"{requirement.name} is not in requirements.lock: {HINT}"
        version = lock[name][0]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{requirement.name}=={version} does not satisfy {text}: {HINT}"
        )
        for extra in requirement.extras:  # e.g. matrix-nio[e2e] -> vodozemac
            for needed in metadata.requires(requirement.name) or []:
                child = Requirement(needed)
                if child.marker is not None and child.marker.evaluate({"extra": extra}):
                    assert canonicalize_name(child.name) in lock, (
                        f"{child.name} (from {text}) is not in requirements.lock: {HINT}"
                    )
    for name, (version, hashes, _) in lock.items():
        assert hashes >= 1, f"{name}=={version} has no hash"


def test_nothing_is_locked_for_a_dependency_pyproject_no_longer_has() -> None:
    lock = parse_lock(ROOT / "requirements.lock")
    project = pyproject()["project"]
    assert isinstance(project, dict)
    direct = {canonicalize_name(Requirement(text).name) for text in project["dependencies"]}
    for name, (_, _, via) in lock.items():
        asked_by_pyproject = any("pyproject.toml" in reason for reason in via)
        asked_by_a_locked_package = any(
            canonicalize_name(reason.split()[0]) in lock for reason in via if reason
        )
        if asked_by_pyproject:
            assert name in direct, f"{name} is locked for pyproject.toml but not in it: {HINT}"
        else:
            assert asked_by_a_locked_package, f"{name} is locked but nothing needs it: {HINT}"


def test_build_lock_satisfies_the_build_system() -> None:
    lock = parse_lock(ROOT / "requirements-build.lock")
    build = pyproject()["build-system"]
    assert isinstance(build, dict)
    for text in build["requires"]:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in lock, f"{requirement.name} missing from requirements-build.lock: {HINT}"
        assert requirement.specifier.contains(lock[name][0], prereleases=True), HINT
    for name, (_, hashes, _) in lock.items():
        assert hashes >= 1, name


def test_the_lock_is_made_by_the_make_lock_command() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "--generate-hashes" in makefile and "requirements.lock" in makefile
    header = (ROOT / "requirements.lock").read_text(encoding="utf-8")[:600]
    assert "pip-compile" in header and "--generate-hashes" in header


def _imported_top_modules(folder: Path) -> set[str]:
    """Top-level names of every import statement under `folder` (deferred ones included)."""
    names: set[str] = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def test_every_library_the_bot_imports_is_in_the_runtime_lock() -> None:
    # The test venv holds more than the image (Synapse brings `cryptography`, for one): an
    # import that only the test venv satisfies would pass here and fail in production.
    locked = set(parse_lock(ROOT / "requirements.lock"))
    providers = metadata.packages_distributions()
    own = {"bot", "commands", "config", "sandbox"}  # this project (the CLI opens the sandbox)
    missing: dict[str, list[str]] = {}
    for folder in ("bot", "commands", "config"):
        for name in _imported_top_modules(ROOT / folder) - own - sys.stdlib_module_names:
            distributions = {canonicalize_name(d) for d in providers.get(name, [])}
            if not distributions & locked:
                missing.setdefault(name, sorted(distributions))
    assert not missing, f"imported by the bot, not in requirements.lock: {missing} ({HINT})"
