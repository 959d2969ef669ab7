"""Synthetic room history for seeding the bot's store: French office chatter, deterministic."""

from __future__ import annotations

from collections.abc import Iterator

from bot.store.database import StoredMessage

_OPENINGS = (
    "Bonjour à tous,",
    "Petit point rapide :",
    "Pour info,",
    "Je reviens vers vous concernant",
    "Suite à la réunion de ce matin,",
    "Rappel :",
    "Question pour l'équipe :",
    "Merci pour vos retours,",
)
_SUBJECTS = (
    "le budget du second semestre",
    "la migration de la messagerie",
    "le plan de formation des agents",
    "la note au cabinet",
    "le marché public de maintenance",
    "les congés d'été",
    "la réponse à la Cour des comptes",
    "le comité de pilotage de jeudi",
    "la mise à jour du référentiel",
    "l'accueil des nouveaux arrivants",
)
_ENDINGS = (
    "je propose qu'on en parle en fin de semaine.",
    "la version corrigée est sur le partage.",
    "il manque encore la validation du chef de service.",
    "le calendrier glisse d'une semaine.",
    "pouvez-vous relire avant vendredi ?",
    "c'est validé de mon côté.",
    "on attend le retour de la direction juridique.",
    "je mets à jour le tableau de suivi.",
    "la décision sera prise en comité.",
)
PEOPLE = (
    ("@camille.martin-dinum.gouv.fr:localhost", "Camille Martin [DINUM]"),
    ("@karim.benali-finances.gouv.fr:localhost", "Karim Benali [Finances]"),
    ("@sophie.durand-interieur.gouv.fr:localhost", "Sophie Durand [Intérieur]"),
    ("@julien.petit-dinum.gouv.fr:localhost", "Julien Petit [DINUM]"),
    ("@amina.diallo-travail.gouv.fr:localhost", "Amina Diallo [Travail]"),
)


def message_body(index: int) -> str:
    return f"{_OPENINGS[index % 8]} {_SUBJECTS[(index // 8) % 10]} : {_ENDINGS[(index // 80) % 9]}"


def room_history(
    room_id: str, count: int, end_ms: int, step_ms: int = 10_000, tag: str = "m"
) -> Iterator[StoredMessage]:
    """`count` messages in `room_id`, one every `step_ms`, the last one at `end_ms`."""
    first = end_ms - (count - 1) * step_ms
    key = room_id.strip("!").split(":", 1)[0]
    for index in range(count):
        sender, name = PEOPLE[(index * 7 + len(key)) % len(PEOPLE)]
        yield StoredMessage(
            event_id=f"$bench-{tag}-{key}-{index}",
            room_id=room_id,
            sender=sender,
            sender_name=name,
            body=message_body(index * 31 + len(key)),
            timestamp_ms=first + index * step_ms,
        )
