"""`tchap-bot` command line: run the bot, and the administrator's data requests."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from bot.ops.logs import configure_logging
from config.settings import ConfigError, Settings, load_settings

EXIT_CONFIG_ERROR = 2
EXIT_LOCKED = 4  # another process holds the data folder (same code as the bot's own lock)


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
    doctor = sub.add_parser(
        "doctor",
        help="vérifier l'installation : réglages, dossier, serveur Matrix, compte, clés, modèles",
    )
    doctor.add_argument("--config", type=Path)
    reset = sub.add_parser(
        "reset-session",
        help="oublier le jeton d'accès enregistré (révoqué) ; le magasin de clés est gardé",
    )
    reset.add_argument("--config", type=Path)
    sub.add_parser(
        "healthcheck",
        help="sonde de l'image : /healthz sur TCHAP_BOT_HEALTH_HOST:TCHAP_BOT_HEALTH_PORT",
    )
    report = sub.add_parser(
        "rapport",
        help="écrire le rapport du pilote : une page HTML autonome (graphiques, tableaux)",
    )
    report.add_argument("--sortie", type=Path, required=True, help="fichier HTML à écrire")
    report.add_argument(
        "--depuis", default="30j", help="période : 30j (défaut), 12 semaines, 6 mois, 2026-09-01"
    )
    report.add_argument("--csv", type=Path, help="dossier où écrire aussi les tableaux en CSV")
    report.add_argument("--config", type=Path)
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
    from bot.pilot.service import Pilot
    from bot.store import Store

    store = await Store.open(settings.database_path)
    try:
        deleted = await store.people.purge(user_id)
        await Pilot(settings, store).forget_person(user_id)
    finally:
        await store.close()
    print(
        f"Données effacées pour {user_id} : {deleted.messages} messages, "
        f"{deleted.conversation_turns} éléments de contexte, {deleted.questions_withdrawn} "
        f"questions en attente abandonnées, {deleted.custom_commands} commandes de salon, "
        f"{deleted.schedules} planifications ; {deleted.audit_texts} textes du journal des "
        "réglages effacés (qui et quand restent) ; "
        f"{deleted.documents} documents."
    )
    return 0


async def _reset_session(settings: Settings) -> int:
    """Forget a revoked access token; the crypto store stays (reused if the device is the same)."""
    from bot import texts
    from bot.ops.datalock import LockHeld, held
    from bot.store import Store

    try:
        with held(settings.data_dir):
            if not settings.database_path.is_file():
                print(texts.RESET_SESSION_NONE)
                return 0
            store = await Store.open(settings.database_path)
            try:
                session = await store.state.load_session()
                await store.state.forget_session()
            finally:
                await store.close()
    except LockHeld as running:
        print(texts.RESET_SESSION_BOT_RUNNING.format(pid=running.pid), file=sys.stderr)
        return EXIT_LOCKED
    if session is None:
        print(texts.RESET_SESSION_NONE)
    else:
        print(texts.RESET_SESSION_DONE.format(device_id=session.device_id))
    return 0


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


async def _report(settings: Settings, output: Path, since: str, csv_dir: Path | None) -> int:
    import time
    from datetime import datetime

    from bot import texts
    from bot.french import PARIS
    from bot.pilot.pseudonym import paris_today
    from bot.pilot.report import PeriodError, build_report, parse_period
    from bot.pilot.report_csv import write_csv
    from bot.pilot.report_html import french_date, render_html
    from bot.pilot.service import Pilot
    from bot.store import Store

    now = time.time()
    try:
        start = parse_period(since, paris_today(now))
    except PeriodError:
        print(texts.REPORT_BAD_PERIOD.format(value=since), file=sys.stderr)
        return EXIT_CONFIG_ERROR
    store = await Store.open(settings.database_path)
    try:
        generated = datetime.fromtimestamp(now, PARIS).strftime("%d/%m/%Y %H:%M")
        report = await build_report(
            Pilot(settings, store).repository, settings, start, now, generated
        )
    finally:
        await store.close()
    page = render_html(report)
    await asyncio.to_thread(_write_text, output, page)
    print(
        texts.REPORT_WRITTEN.format(
            path=output,
            days=report.days,
            start=french_date(report.start),
            end=french_date(report.end),
        )
    )
    if csv_dir is not None:
        await asyncio.to_thread(write_csv, report, csv_dir)
        print(texts.REPORT_CSV_WRITTEN.format(path=csv_dir))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["sandbox"]:  # before the settings: the sandbox needs no TCHAP_BOT_*
        from sandbox.trial import main as sandbox_main

        return sandbox_main(argv[1:])
    args = _parser().parse_args(argv)
    if args.command == "healthcheck":  # the image's HEALTHCHECK: no settings but the port
        from bot.ops.health import probe

        return probe(os.environ)
    if args.command == "doctor":  # reports invalid settings itself, as its first check
        from bot.doctor import run_doctor

        configure_logging("warning", "console")
        return asyncio.run(run_doctor(args.config))
    settings = _settings(args.config)
    configure_logging(settings.log_level, settings.log_format, _secrets(settings))
    if args.command == "run":
        from bot.app import run_until_signalled

        return asyncio.run(run_until_signalled(settings))
    if args.command == "export-data":
        return asyncio.run(_export(settings, args.user_id))
    if args.command == "purge-user":
        return asyncio.run(_purge(settings, args.user_id))
    if args.command == "reset-session":
        return asyncio.run(_reset_session(settings))
    if args.command == "rapport":
        return asyncio.run(_report(settings, args.sortie, args.depuis, args.csv))
    return EXIT_CONFIG_ERROR


if __name__ == "__main__":
    raise SystemExit(main())
