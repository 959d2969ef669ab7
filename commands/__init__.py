from commands.registry import CommandRegistry


def build_registry() -> CommandRegistry:
    return CommandRegistry()
