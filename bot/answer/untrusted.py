"""Text written by room members, treated as data: written once, used everywhere.

Members choose their display names, room names, messages and command arguments; any of it
may try to pose as instructions to the model or as the bot's own formatting. Three tools:

- `one_line` — for names (display names, room names) before they reach a prompt or a
  transcript: control and format characters and newlines collapsed to single spaces, length
  capped, so a name cannot start a fake line ("\\nSystème : …") or carry invisible text.
- `fence` — for transcripts and quoted messages in prompts: the content between an opening
  and a closing marker that carry a tag derived from the content itself, so the content cannot
  contain (and thus cannot forge) the closing marker. The system prompt says that fenced
  content is never instructions.
- `as_code` / `as_code_block` — for user text echoed in the bot's own replies (`!config`
  values, custom-command templates and descriptions, names): a Markdown code span or block
  whose backtick fence is longer than any backtick run in the text, so nothing in it renders
  as a link, emphasis or a way out of the code.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

from bot import texts

NAME_MAX_CHARS = 64
ROOM_NAME_MAX_CHARS = 80
ELLIPSIS = "…"
FENCE_OPEN = texts.DATA_FENCE_OPEN
FENCE_CLOSE = texts.DATA_FENCE_CLOSE
_INVISIBLE = {"Cc", "Cf", "Cs", "Zl", "Zp"}
_BACKTICKS = re.compile(r"`+")


def _invisible(char: str) -> bool:
    return unicodedata.category(char) in _INVISIBLE


def one_line(text: str, max_chars: int = NAME_MAX_CHARS, fallback: str = "?") -> str:
    """`text` on one line, without control or format characters, at most `max_chars` long."""
    spaced = "".join(" " if _invisible(char) else char for char in text)
    collapsed = " ".join(spaced.split())
    if len(collapsed) > max_chars:
        collapsed = collapsed[: max(1, max_chars - 1)].rstrip() + ELLIPSIS
    return collapsed or fallback


def fence_tag(content: str) -> str:
    """A tag that does not occur in `content` (derived from it: the same content, the same
    tag, so prompts stay stable; a collision is re-drawn)."""
    salt = 0
    while True:
        digest = hashlib.sha256(f"{salt}\x00{content}".encode("utf-8", "surrogatepass"))
        tag = digest.hexdigest()[:12]
        if tag not in content:
            return tag
        salt += 1


def fence(content: str) -> str:
    """`content` between markers it cannot contain: it can never close the fence early."""
    tag = fence_tag(content)
    return f"{FENCE_OPEN.format(tag=tag)}\n{content}\n{FENCE_CLOSE.format(tag=tag)}"


def _ticks_for(text: str, minimum: int) -> str:
    longest = max((len(run) for run in _BACKTICKS.findall(text)), default=0)
    return "`" * max(minimum, longest + 1)


def as_code(text: str, max_chars: int | None = None) -> str:
    """`text` as an inline Markdown code span showing it literally, on one line."""
    line = one_line(text, max_chars or 10_000, fallback="")
    if not line:
        return "` `"
    ticks = _ticks_for(line, 1)
    pad = " " if line.startswith("`") or line.endswith("`") else ""
    return f"{ticks}{pad}{line}{pad}{ticks}"


def as_code_block(text: str) -> str:
    """`text` as a fenced Markdown code block that no line of it can close."""
    clean = "".join(
        char if char in "\n\t" or not _invisible(char) else " " for char in text.replace("\r", "")
    )
    ticks = _ticks_for(clean, 3)
    return f"{ticks}\n{clean}\n{ticks}"
