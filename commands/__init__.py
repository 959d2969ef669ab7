"""The bot's commands. `build_registry()` gives a fresh registry (no global state)."""

from __future__ import annotations

from commands import (
    aide,
    avis,
    commande,
    commandes,
    config,
    documents,
    modele,
    oublie,
    oublie_moi,
    planifier,
    resume,
    stats,
    transcrire,
)
from commands.registry import CommandRegistry


def build_registry() -> CommandRegistry:
    """Every command, in the order help lists them."""
    registry = CommandRegistry()
    for module in (
        aide,
        resume,
        documents,
        oublie,
        config,
        modele,
        stats,
        transcrire,
        oublie_moi,
        avis,
        commandes,
        commande,
        planifier,
    ):
        registry.register(module.COMMAND)
    return registry
