"""Which proxy reaches which URL: the standard variables, NO_PROXY, and proxy_url."""

from __future__ import annotations

from bot.ops.proxy import proxy_for

HS = "https://matrix.agent.dinum.tchap.gouv.fr"
MODEL = "http://vllm.interne:8000"


def test_standard_variables_by_scheme_and_lower_case_wins() -> None:
    env = {"HTTPS_PROXY": "http://p-upper:3128", "https_proxy": "http://p:3128"}
    assert proxy_for(HS, environ=env) == "http://p:3128"
    assert proxy_for(MODEL, environ=env) is None, "no HTTP_PROXY: plain HTTP goes direct"
    assert proxy_for(MODEL, environ={"HTTP_PROXY": "http://h:3128"}) == "http://h:3128"
    assert proxy_for(HS, environ={"ALL_PROXY": "http://a:3128"}) == "http://a:3128"
    assert proxy_for(HS, environ={}) is None


def test_no_proxy_hosts_domains_ports_and_star() -> None:
    env = {"HTTPS_PROXY": "http://p:3128", "HTTP_PROXY": "http://p:3128"}
    for no_proxy in ("tchap.gouv.fr", ".gouv.fr", "matrix.agent.dinum.tchap.gouv.fr", "*"):
        assert proxy_for(HS, environ={**env, "NO_PROXY": no_proxy}) is None, no_proxy
    assert proxy_for(HS, environ={**env, "NO_PROXY": "ouv.fr"}) == "http://p:3128"
    assert proxy_for(MODEL, environ={**env, "no_proxy": "vllm.interne:8000"}) is None
    assert proxy_for(MODEL, environ={**env, "no_proxy": "vllm.interne:9000"}) == "http://p:3128"


def test_proxy_url_setting_wins_but_no_proxy_still_exempts() -> None:
    env = {"HTTPS_PROXY": "http://env:3128"}
    assert proxy_for(HS, "http://setting:8080", environ=env) == "http://setting:8080"
    assert proxy_for(MODEL, "http://setting:8080", environ={}) == "http://setting:8080"
    assert proxy_for(HS, "http://setting:8080", environ={"NO_PROXY": ".gouv.fr"}) is None
