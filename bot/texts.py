"""Every sentence the bot says to users, in one place.

French first: the users are French civil servants. Keeping the texts here lets the wording be
reviewed (and one day translated) without reading the code.
"""

from __future__ import annotations

# --- Answers that replace an LLM answer --------------------------------------------------------
LLM_UNAVAILABLE = (
    "⚠️ Le service d'IA ne répond pas pour le moment. Votre question n'a pas été traitée : "
    "réessayez dans quelques minutes."
)
LLM_CIRCUIT_OPEN = (
    "⚠️ Le service d'IA est momentanément indisponible (plusieurs échecs consécutifs). "
    "Réessayez dans quelques minutes."
)
LLM_RATE_LIMITED = (
    "⚠️ Le service d'IA est saturé en ce moment. Votre question n'a pas été traitée : "
    "réessayez dans quelques instants."
)
LLM_TIMEOUT = (
    "⚠️ Le service d'IA a mis trop de temps à répondre. Votre question n'a pas été traitée : "
    "réessayez, éventuellement avec une question plus courte."
)
LLM_EMPTY_ANSWER = "⚠️ Le service d'IA a renvoyé une réponse vide. Reformulez votre question."
ANSWER_INCOMPLETE = "\n\n*(⚠️ Réponse incomplète : le service d'IA s'est interrompu.)*"

USER_RATE_LIMITED = (
    "⏳ Vous avez posé beaucoup de questions en peu de temps. "
    "Merci de patienter un peu avant la prochaine."
)
ROOM_RATE_LIMITED = (
    "⏳ Ce salon a posé beaucoup de questions en peu de temps. "
    "Merci de patienter un peu avant la prochaine."
)
NOT_ALLOWED = "Désolé, je ne suis pas autorisé à répondre à votre compte."
EMPTY_QUESTION = "Bonjour ! Posez-moi votre question, ou tapez `!aide` pour la liste des commandes."

UNDECRYPTABLE = (
    "🔒 Je n'ai pas pu déchiffrer votre message : votre application ne m'a pas transmis la clé. "
    "Vérifiez que votre session est vérifiée, puis renvoyez votre message."
)

# --- System prompt pieces ------------------------------------------------------------------
ROOM_INSTRUCTIONS_HEADER = "Consignes propres à ce salon :"
ANSWER_LANGUAGE = "Réponds en {language}."
REPLIED_MESSAGE_CONTEXT = "(En réponse au message de {sender} : « {text} »)"

WEEKDAYS = ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche")
MONTHS = (
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
)

# --- Commands ------------------------------------------------------------------------------
UNKNOWN_COMMAND = (
    "Commande inconnue : `{prefix}{word}`. Tapez `{prefix}aide` pour la liste des commandes."
)
BAD_ARGUMENTS = "{reason}.\nUsage : `{usage}`"
MODERATOR_ONLY = (
    "⛔ Cette action est réservée aux modérateurs du salon (niveau de pouvoir {level} ou plus). "
    "Rien n'a été modifié."
)
COMMAND_FAILED = (
    "⚠️ La commande n'a pas pu aboutir à cause d'une erreur interne. Réessayez plus tard."
)
