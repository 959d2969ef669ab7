"""`tchap-bot` command line: run the bot, and the administrator's data requests."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from bot.ops.logs import configure_logging
from config.settings import ConfigError, Settings, load_settings

EXIT_CONFIG_ERROR = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tchap-bot", description="Assistant IA (Mistral) pour Tchap"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run", help="lancer le bot au premier plan (arrêt propre sur SIGTERM/SIGINT)"
    )
    run.add_argument(
        "--config", type=Path, help="fichier TOML (les variables d'environnement priment)"
    )
    export = sub.add_parser(
        "export-data", help="exporter en JSON les données stockées d'un utilisateur"
    )
    export.add_argument("user_id")
    export.add_argument("--config", type=Path)
    purge = sub.add_parser(
        "purge-user", help="effacer toutes les données stockées d'un utilisateur"
    )
    purge.add_argument("user_id")
    purge.add_argument("--config", type=Path)
    # Listed for --help only: `main` hands `sandbox …` to the sandbox's own parser, so that
    # `tchap-bot run` never imports the sandbox.
    sub.add_parser(
        "sandbox",
        help="essayer le bot hors ligne : Synapse local, modèle, conversation dans le terminal",
        add_help=False,
    )
    return parser


def _settings(path: Path | None) -> Settings:
    try:
        return load_settings(path)
    except ConfigError as error:
        print(str(error), file=sys.stderr)
        raise SystemExit(EXIT_CONFIG_ERROR) from None


def _secrets(settings: Settings) -> list[str]:
    values = [settings.mistral_api_key.get_secret_value()]
    for secret in (settings.password, settings.access_token):
        if secret is not None:
            values.append(secret.get_secret_value())
    return values


async def _export(settings: Settings, user_id: str) -> int:
    from bot.store import Store

    store = await Store.open(settings.database_path)
    try:
        print(json.dumps(await store.people.export(user_id), ensure_ascii=False, indent=2))
    finally:
        await store.close()
    return 0


async def _purge(settings: Settings, user_id: str) -> int:
    from bot.store import Store

    store = await Store.open(settings.database_path)
    try:
        deleted = await store.people.purge(user_id)
    finally:
        await store.close()
    print(
        f"Données effacées pour {user_id} : {deleted.messages} messages, {deleted.conversation_turns} éléments de contexte, {deleted.documents} documents."
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["sandbox"]:  # before the settings: the sandbox needs no TCHAP_BOT_*
        from sandbox.trial import main as sandbox_main

        return sandbox_main(argv[1:])
    args = _parser().parse_args(argv)
    settings = _settings(args.config)
    configure_logging(settings.log_level, settings.log_format, _secrets(settings))
    if args.command == "run":
        from bot.app import run_until_signalled

        return asyncio.run(run_until_signalled(settings))
    if args.command == "export-data":
        return asyncio.run(_export(settings, args.user_id))
    if args.command == "purge-user":
        return asyncio.run(_purge(settings, args.user_id))
    return EXIT_CONFIG_ERROR


if __name__ == "__main__":
    raise SystemExit(main())
