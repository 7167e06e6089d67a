"""The official OpenAI Python SDK against a service's /v1, one set of checks for both targets
(tests/test_openai_sdks.py: the Python service; tests/test_worker_openai_sdks.py: the Worker):
one contract, so the same calls must send the gateway the same bodies and come back alike.

Each check takes the SDK ``client`` (a caller key as its api_key, pointed at ``<service>/v1``)
and the loopback ``gateway`` (tools/testkit.py) with no requests recorded yet.
"""
from __future__ import annotations

import json

from cases import ACCOUNT_ID

OPENAI = f"/v1/{ACCOUNT_ID}/demo-gw/openai"  # the gateway path of the openai provider
IDENTITY = {"caller": "default", "service": "demo-svc"}  # cf-aig-metadata for SERVICE_API_KEY
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}},
                       "required": ["q"]},
    },
}
HI = [{"role": "user", "content": "Hi"}]


def sent(gateway) -> list[tuple[str, dict]]:
    """(path, JSON body) of each request the gateway received, in order."""
    return [(r.path, r.body) for r in gateway.requests]


def chat(client, gateway) -> None:
    """Sampling options go through as sent; OpenAI's shape and the gateway's headers come back."""
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=HI, max_tokens=50, temperature=0.2, top_p=0.9,
        stop=["\n\n"], seed=7)
    answer = raw.parse()

    assert answer.choices[0].message.content == "Hello there"
    assert answer.model == "gpt-4o-mini" and answer.usage.total_tokens == 3
    assert raw.headers["cf-aig-log-id"] == "LOG1" and raw.headers["cf-aig-cache-status"] == "MISS"
    assert sent(gateway) == [(f"{OPENAI}/chat/completions", {
        "model": "gpt-4o-mini", "messages": HI,
        "max_tokens": 50, "temperature": 0.2, "top_p": 0.9, "stop": ["\n\n"], "seed": 7})]
    headers = gateway.requests[0].headers
    assert json.loads(headers["cf-aig-metadata"]) == IDENTITY
    assert "authorization" not in headers  # unified billing: no provider key, never the caller's


def stream(client, gateway) -> None:
    """A stream's chunks (the usage chunk included) pass through as the gateway sent them."""
    chunks = list(client.chat.completions.create(
        model="gpt-4o-mini", messages=HI, stream=True, stream_options={"include_usage": True}))

    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello there"
    assert chunks[-1].usage.total_tokens == 3 and chunks[-1].choices == []
    assert sent(gateway)[0][1] == {"model": "gpt-4o-mini", "stream": True,
                                   "stream_options": {"include_usage": True}, "messages": HI}


def tool_call_round_trip(client, gateway) -> None:
    """A tool call comes back; the assistant's call and the tool's answer go up as sent."""
    question = [{"role": "user", "content": "Weather in Paris?"}]
    first = client.chat.completions.create(model="gpt-4o-mini", messages=question,
                                           tools=[WEATHER], tool_choice="auto")
    call = first.choices[0].message.tool_calls[0]
    assert (first.choices[0].finish_reason, call.id, call.function.name, call.function.arguments) == (
        "tool_calls", "call_1", "get_weather", '{"q": "Weather in Paris?"}')
    history = [*question, first.choices[0].message.model_dump(exclude_none=True),
               {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"}]
    second = client.chat.completions.create(model="gpt-4o-mini", messages=history, tools=[WEATHER])

    assert second.choices[0].message.content == "The tool answered: sunny, 21 C"
    assert sent(gateway)[0][1] == {"model": "gpt-4o-mini", "messages": question,
                                   "tools": [WEATHER], "tool_choice": "auto"}
    assert sent(gateway)[1][1]["messages"] == [
        *question,
        {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function", "function": {
            "name": "get_weather", "arguments": '{"q": "Weather in Paris?"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 C"}]


def tool_call_deltas(client, gateway) -> None:
    """Streamed tool-call deltas arrive whole: id and name first, then the arguments in pieces."""
    chunks = list(client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Paris"}], tools=[WEATHER],
        stream=True))

    deltas = [c.choices[0].delta.tool_calls for c in chunks if c.choices[0].delta.tool_calls]
    assert deltas[0][0].id == "call_1" and deltas[0][0].function.name == "get_weather"
    assert "".join(d[0].function.arguments for d in deltas) == '{"q": "Paris"}'
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def response_format_json_schema(client, gateway) -> None:
    """response_format with a JSON schema goes up as sent; the answer parses against it."""
    schema = {"type": "object", "properties": {"answer": {"type": "string"}},
              "required": ["answer"], "additionalProperties": False}
    response_format = {"type": "json_schema",
                       "json_schema": {"name": "answer", "schema": schema, "strict": True}}
    answer = client.chat.completions.create(model="gpt-4o-mini", messages=HI,
                                            response_format=response_format)

    assert json.loads(answer.choices[0].message.content) == {"answer": "Hello there"}
    assert sent(gateway)[0][1]["response_format"] == response_format


def openai_embeddings(client, gateway) -> None:
    """openai embeddings: the vectors come back in order, the body goes up as sent."""
    vectors = client.embeddings.create(model="text-embedding-3-small", input=["one", "three"],
                                       encoding_format="float")

    assert [d.embedding for d in vectors.data] == [[3.0, 0.5, -0.5], [5.0, 0.5, -0.5]]
    assert sent(gateway)[0] == (f"{OPENAI}/embeddings", {
        "model": "text-embedding-3-small", "input": ["one", "three"], "encoding_format": "float"})
