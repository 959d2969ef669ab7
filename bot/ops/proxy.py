"""Outbound HTTP proxy: which proxy, if any, reaches a given URL.

Ministry networks reach the homeserver and the model endpoint through an HTTP(S) proxy. The
standard variables are honoured (`HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY`, lower-case too, as
curl and Python read them), or `proxy_url` sets one proxy for both; `NO_PROXY` still exempts
its hosts. Both clients (nio's aiohttp session, the SDK's HTTP client) get the answer
explicitly, so neither depends on its library's own reading of the environment.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Mapping
from urllib.parse import urlsplit


def proxy_for(
    url: str, proxy_url: str | None = None, environ: Mapping[str, str] | None = None
) -> str | None:
    """The proxy to use for `url` (None: connect directly)."""
    proxies = urllib.request.getproxies_environment() if environ is None else _proxies_from(environ)
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if _bypassed(parts.hostname or "", port, proxies.get("no", "")):
        return None
    if proxy_url:
        return proxy_url
    return proxies.get(parts.scheme) or proxies.get("all") or None


def _proxies_from(environ: Mapping[str, str]) -> dict[str, str]:
    proxies: dict[str, str] = {}
    for name, value in environ.items():  # upper-case first, lower-case wins (as urllib does)
        if name.isupper() and value and name.lower().endswith("_proxy"):
            proxies[name.lower()[: -len("_proxy")]] = value
    for name, value in environ.items():
        if name.islower() and value and name.endswith("_proxy"):
            proxies[name[: -len("_proxy")]] = value
    return proxies


def _bypassed(host: str, port: int, no_proxy: str) -> bool:
    """NO_PROXY: `*`, host names, domain suffixes (`.gouv.fr` or `gouv.fr`), `host:port`."""
    host = host.lower().rstrip(".")
    for entry in (item.strip().lower() for item in no_proxy.split(",")):
        if not entry:
            continue
        if entry == "*":
            return True
        name, _, entry_port = entry.rpartition(":") if entry.count(":") == 1 else ("", "", "")
        if name and entry_port.isdigit():  # host:port matches that port only
            if int(entry_port) != port:
                continue
            entry = name
        entry = entry.lstrip(".")
        if host == entry or host.endswith("." + entry):
            return True
    return False
