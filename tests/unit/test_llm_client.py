"""The LLM client's fault handling, through the real mistralai SDK against the local fake API.

Real HTTP on 127.0.0.1 (FakeMistral), so status codes, headers (Retry-After), timeouts and
refused connections are the ones the SDK really sees.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from bot.answer.llm import ChatMessage, ChatRequest, LLMClient
from bot.answer.llm_failures import CircuitBreaker, LLMError, LLMErrorKind, backoff_seconds
from sandbox.fake_mistral import FakeMistral, default_responder
from sandbox.mistral_wire import image_urls
from tests.support.synapse import free_port

REQUEST = ChatRequest(
    messages=[ChatMessage("system", "Tu es un assistant."), ChatMessage("user", "Bonjour ?")],
    model="mistral-small-latest",
    temperature=0.3,
    max_tokens=64,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


MakeClient = Callable[..., LLMClient]


@pytest.fixture
async def make_client(fake_llm: FakeMistral) -> AsyncIterator[MakeClient]:
    clients: list[LLMClient] = []

    def factory(**overrides: Any) -> LLMClient:
        options: dict[str, Any] = {
            "api_key": "test-key",
            "server_url": fake_llm.base_url,
            "timeout_seconds": 5.0,
            "max_retries": 3,
            "max_concurrency": 4,
            "backoff_initial_ms": 20,
            "backoff_max_ms": 80,
        }
        options.update(overrides)
        client = LLMClient(**options)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.close()


async def bounded(awaitable: Any, seconds: float = 15) -> Any:
    """Fail the test instead of hanging if the client waits far longer than it should."""
    return await asyncio.wait_for(awaitable, seconds)


# --- Retries ---------------------------------------------------------------------------------


async def test_server_errors_are_retried_until_success(
    make_client: MakeClient, fake_llm: FakeMistral
) -> None:
    client = make_client(max_retries=3)
    fake_llm.fail_next(1, status=500)
    fake_llm.fail_next(1, status=502)
    fake_llm.fail_next(1, status=503)

    completion = await bounded(client.complete(REQUEST))

    assert completion.text == "Réponse simulée : Bonjour ?"
    assert len(fake_llm.requests) == 4
    assert not client.breaker.is_open


async def test_retries_stop_after_max_retries(
    make_client: MakeClient, fake_llm: FakeMistral
) -> None:
    client = make_client(max_retries=2)
    fake_llm.fail_next(20, status=503)

    with pytest.raises(LLMError) as caught:
        await bounded(client.complete(REQUEST))

    assert caught.value.kind is LLMErrorKind.UNAVAILABLE
    assert len(fake_llm.requests) == 3, "one attempt plus exactly max_retries retries"


async def test_client_errors_are_not_retried_and_do_not_open_the_circuit(
    make_client: MakeClient, fake_llm: FakeMistral
) -> None:
    client = make_client(max_retries=3, breaker=CircuitBreaker(threshold=1))
    fake_llm.fail_next(2, status=400)

    with pytest.raises(LLMError) as caught:
        await bounded(client.complete(REQUEST))

    assert caught.value.kind is LLMErrorKind.REJECTED
    assert len(fake_llm.requests) == 1
    assert not client.breaker.is_open


async def test_retry_after_is_honoured(make_client: MakeClient, fake_llm: FakeMistral) -> None:
    client = make_client(max_retries=2, backoff_initial_ms=10, backoff_max_ms=20)
    answered_at: list[float] = []

    def responder(body: dict[str, Any]) -> str:
        answered_at.append(time.monotonic())
        return default_responder(body)

    fake_llm.responder = responder
    fake_llm.fail_next(1, status=429, retry_after=1)
    started = time.monotonic()

    completion = await bounded(client.complete(REQUEST))

    assert completion.text.startswith("Réponse simulée")
    assert len(fake_llm.requests) == 2
    # Our own backoff would have retried after at most 20 ms; the server asked for 1 s.
    assert answered_at[0] - started >= 0.95


async def test_retry_after_beyond_the_budget_fails_at_once(
    make_client: MakeClient, fake_llm: FakeMistral
) -> None:
    client = make_client(timeout_seconds=1.0, max_retries=3)
    fake_llm.fail_next(1, status=429, retry_after=600)

    with pytest.raises(LLMError) as caught:
        await bounded(client.complete(REQUEST), 10)

    assert caught.value.kind is LLMErrorKind.RATE_LIMITED
    assert len(fake_llm.requests) == 1, "no retry when the wait cannot fit in the budget"


async def test_a_hung_request_times_out_and_is_retried(
    make_client: MakeClient, fake_llm: FakeMistral
) -> None:
    client = make_client(timeout_seconds=0.5, max_retries=2)
    fake_llm.hang_next(30)

    completion = await bounded(client.complete(REQUEST))

    assert completion.text.startswith("Réponse simulée")
    assert len(fake_llm.requests) == 2


async def test_a_service_that_keeps_hanging_gives_a_timeout_error(
    make_client: MakeClient, fake_llm: FakeMistral
) -> None:
    client = make_client(timeout_seconds=0.3, max_retries=5)
    for _ in range(10):
        fake_llm.hang_next(30)

    with pytest.raises(LLMError) as caught:
        await bounded(client.complete(REQUEST))

    assert caught.value.kind is LLMErrorKind.TIMEOUT
    # The whole question is bounded by twice the per-attempt timeout: at most two attempts.
    assert 1 <= len(fake_llm.requests) <= 2


async def test_connection_refused_is_retried_until_the_service_listens(
    make_client: MakeClient,
) -> None:
    port = free_port()
    client = make_client(
        server_url=f"http://127.0.0.1:{port}",
        max_retries=30,
        backoff_initial_ms=20,
        backoff_max_ms=100,
    )
    late = FakeMistral(port=port)
    call = asyncio.ensure_future(client.complete(REQUEST))
    await asyncio.sleep(0.4)
    assert not call.done(), "refused connections are retried, not reported at once"
    await late.start()
    try:
        completion = await bounded(call)
        assert completion.text.startswith("Réponse simulée")
        assert len(late.requests) == 1
    finally:
        await late.stop()


async def test_connection_refused_for_good_is_reported_as_unavailable(
    make_client: MakeClient,
) -> None:
    client = make_client(server_url=f"http://127.0.0.1:{free_port()}", max_retries=2)

    with pytest.raises(LLMError) as caught:
        await bounded(client.complete(REQUEST))

    assert caught.value.kind is LLMErrorKind.UNAVAILABLE


def test_backoff_grows_exponentially_and_is_capped() -> None:
    highest = [backoff_seconds(n, 500, 10_000, rng=lambda: 1.0) for n in range(8)]
    lowest = [backoff_seconds(n, 500, 10_000, rng=lambda: 0.0) for n in range(8)]

    assert highest[:4] == [0.5, 1.0, 2.0, 4.0]
    assert max(highest) == 10.0, "never above llm_retry_max_ms"
    assert highest[-1] == 10.0
    assert lowest == [value / 2 for value in highest], "jitter keeps at least half the delay"


async def test_streams_are_retried_before_the_first_token(
    make_client: MakeClient, fake_llm: FakeMistral
) -> None:
    client = make_client(max_retries=2)
    fake_llm.fail_next(1, status=503)

    deltas = [delta async for delta in client.stream(REQUEST)]

    assert "".join(deltas) == "Réponse simulée : Bonjour ?"
    assert len(fake_llm.requests) == 2


async def test_global_concurrency_limit(make_client: MakeClient, fake_llm: FakeMistral) -> None:
    client = make_client(max_concurrency=2)
    active = 0
    peak = 0

    async def responder(body: dict[str, Any]) -> str:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.1)
        active -= 1
        return default_responder(body)

    fake_llm.responder = responder
    await bounded(asyncio.gather(*(client.complete(REQUEST) for _ in range(6))))

    assert len(fake_llm.requests) == 6
    assert peak == 2


# --- Circuit breaker -------------------------------------------------------------------------


async def test_outage_opens_the_circuit_then_fails_fast_then_closes(
    make_client: MakeClient, fake_llm: FakeMistral
) -> None:
    clock = FakeClock()
    client = make_client(
        max_retries=1, breaker=CircuitBreaker(threshold=2, cooldown_seconds=30, clock=clock)
    )
    fake_llm.set_down(True)

    for _ in range(2):
        with pytest.raises(LLMError) as caught:
            await bounded(client.complete(REQUEST))
        assert caught.value.kind is LLMErrorKind.UNAVAILABLE
    assert client.breaker.is_open
    assert len(fake_llm.requests) == 4

    for _ in range(5):
        with pytest.raises(LLMError) as caught:
            await bounded(client.complete(REQUEST))
        assert caught.value.kind is LLMErrorKind.CIRCUIT_OPEN
    assert len(fake_llm.requests) == 4, "an open circuit sends nothing"

    clock.now += 31
    fake_llm.set_down(False)
    first = await bounded(client.complete(REQUEST))
    second = await bounded(client.complete(REQUEST))

    assert first.text.startswith("Réponse simulée") and second.text.startswith("Réponse")
    assert not client.breaker.is_open
    assert len(fake_llm.requests) == 6


async def test_half_open_trial_is_a_single_attempt(
    make_client: MakeClient, fake_llm: FakeMistral
) -> None:
    clock = FakeClock()
    client = make_client(
        max_retries=3, breaker=CircuitBreaker(threshold=1, cooldown_seconds=10, clock=clock)
    )
    fake_llm.set_down(True)
    with pytest.raises(LLMError):
        await bounded(client.complete(REQUEST))
    assert client.breaker.is_open
    before = len(fake_llm.requests)

    clock.now += 11
    with pytest.raises(LLMError) as caught:
        await bounded(client.complete(REQUEST))

    assert caught.value.kind is LLMErrorKind.UNAVAILABLE
    assert len(fake_llm.requests) == before + 1, "the probe is not retried"
    with pytest.raises(LLMError) as caught:
        await bounded(client.complete(REQUEST))
    assert caught.value.kind is LLMErrorKind.CIRCUIT_OPEN, "a failed probe re-opens the circuit"


async def test_a_cancelled_trial_lets_the_next_question_probe(
    make_client: MakeClient, fake_llm: FakeMistral
) -> None:
    clock = FakeClock()
    client = make_client(
        max_retries=0, breaker=CircuitBreaker(threshold=1, cooldown_seconds=10, clock=clock)
    )
    fake_llm.fail_next(1, status=503)
    with pytest.raises(LLMError):
        await bounded(client.complete(REQUEST))
    clock.now += 11
    fake_llm.hang_next(30)
    probe = asyncio.ensure_future(client.complete(REQUEST))
    while len(fake_llm.requests) < 2:  # noqa: ASYNC110 - polling the fake's request log
        await asyncio.sleep(0.01)
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe

    completion = await bounded(client.complete(REQUEST))

    assert completion.text.startswith("Réponse simulée")
    assert not client.breaker.is_open


async def test_a_rejected_trial_does_not_leave_the_circuit_stuck(
    make_client: MakeClient, fake_llm: FakeMistral
) -> None:
    clock = FakeClock()
    client = make_client(
        max_retries=0, breaker=CircuitBreaker(threshold=1, cooldown_seconds=10, clock=clock)
    )
    fake_llm.fail_next(1, status=503)
    with pytest.raises(LLMError):
        await bounded(client.complete(REQUEST))
    clock.now += 11
    fake_llm.fail_next(1, status=400)
    with pytest.raises(LLMError) as caught:
        await bounded(client.complete(REQUEST))
    assert caught.value.kind is LLMErrorKind.REJECTED

    completion = await bounded(client.complete(REQUEST))

    assert completion.text.startswith("Réponse simulée")


# --- Transcription and images ----------------------------------------------------------------


async def test_transcription_uploads_the_audio_and_returns_the_text(
    make_client: MakeClient, fake_llm: FakeMistral
) -> None:
    fake_llm.transcription_text = "Bonjour, ici la préfecture."
    client = make_client()
    transcript = await bounded(
        client.transcribe(b"OggS-voix", "voix.ogg", "voxtral-mini-latest", "fr")
    )
    assert transcript.text == "Bonjour, ici la préfecture."
    [upload] = fake_llm.transcriptions
    assert upload["model"] == "voxtral-mini-latest"
    assert upload["language"] == "fr"
    assert upload["file_name"] == "voix.ogg"
    assert upload["content"] == b"OggS-voix"


async def test_missing_transcription_endpoint_is_rejected_not_an_outage(
    make_client: MakeClient, fake_llm: FakeMistral
) -> None:
    client = make_client()
    fake_llm.transcription_supported = False
    with pytest.raises(LLMError) as caught:
        await bounded(client.transcribe(b"OggS", "voix.ogg", "voxtral-mini-latest", None))
    assert caught.value.kind is LLMErrorKind.REJECTED
    assert caught.value.status == 404
    assert len(fake_llm.transcriptions) == 0
    assert not client.breaker.is_open, "a 404 says nothing about an outage"


async def test_images_go_as_image_parts_of_the_question(
    make_client: MakeClient, fake_llm: FakeMistral
) -> None:
    url = "data:image/jpeg;base64,/9j/AAAA"
    request = ChatRequest(
        messages=[
            ChatMessage("system", "Tu es un assistant."),
            ChatMessage("user", "Que montre la photo ?", images=(url,)),
        ],
        model="mistral-small-latest",
        temperature=0.3,
        max_tokens=64,
    )
    completion = await bounded(make_client().complete(request))
    assert completion.text == "Réponse simulée (1 image) : Que montre la photo ?"
    assert image_urls(fake_llm.last_request) == [url]
    system = fake_llm.last_request["messages"][0]
    assert system["content"] == "Tu es un assistant."
    assert "images" not in str(request.messages[1].as_dict()["content"])


async def test_model_without_vision_is_rejected_with_its_status(
    make_client: MakeClient, fake_llm: FakeMistral
) -> None:
    fake_llm.vision_models = set()
    request = ChatRequest(
        messages=[ChatMessage("user", "Et ça ?", images=("data:image/jpeg;base64,AA",))],
        model="mistral-small-latest",
        temperature=0.3,
        max_tokens=64,
    )
    with pytest.raises(LLMError) as caught:
        await bounded(make_client().complete(request))
    assert caught.value.kind is LLMErrorKind.REJECTED
    assert caught.value.status == 400
