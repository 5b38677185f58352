"""The official `openai` Python client against a running `qwgpu serve`.

Usage: python3 openai_client.py BASE_URL MODEL API_KEY   (BASE_URL ends with /v1)
Run by crates/serve/tests/server.rs when `import openai` works.
"""

import json
import re
import sys
import urllib.request

import openai

def metric(base_url, name):
    """One value of the server's /metrics (beside /v1, open without the key)."""
    root = base_url[: -len("/v1")] if base_url.endswith("/v1") else base_url
    with urllib.request.urlopen(root + "/metrics") as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"{name} is not in /metrics")


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
        },
    },
}


def streamed(client, **kwargs):
    """A streamed chat reply put together: content, reasoning, tool calls, finish reason."""
    content, reasoning, calls, finish = [], [], {}, None
    for chunk in client.chat.completions.create(stream=True, **kwargs):
        for c in chunk.choices:
            content.append(c.delta.content or "")
            reasoning.append(getattr(c.delta, "reasoning_content", None) or "")
            for t in c.delta.tool_calls or []:
                call = calls.setdefault(t.index, {"id": None, "name": "", "arguments": ""})
                call["id"] = t.id or call["id"]
                call["name"] += t.function.name or ""
                call["arguments"] += t.function.arguments or ""
            finish = c.finish_reason or finish
    return "".join(content), "".join(reasoning), [calls[i] for i in sorted(calls)], finish


def check_calls(calls, finish):
    """Calls the server returned are well formed: ids, a known name, JSON arguments."""
    for call in calls:
        assert call["id"].startswith("call_"), call
        assert call["name"] == "get_weather", call
        assert isinstance(json.loads(call["arguments"]), dict), call
    if calls:
        assert finish in ("tool_calls", "length"), finish


def tool_loop(client, model):
    """An agent's loop: a request with tools; the assistant's calls (the
    reply's own, or one made up when the random-weight model wrote none) and
    the tool's answers go back in the history; the final reply, whole and
    streamed, agrees."""
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    for choice in ("auto", "required", {"type": "function", "function": {"name": "get_weather"}}):
        reply = client.chat.completions.create(
            model=model, messages=messages, tools=[WEATHER], tool_choice=choice, max_tokens=8, temperature=0
        )
        c = reply.choices[0]
        assert c.finish_reason in ("stop", "length", "tool_calls"), c.finish_reason
        calls = [
            {"id": t.id, "name": t.function.name, "arguments": t.function.arguments} for t in c.message.tool_calls or []
        ]
        check_calls(calls, c.finish_reason)
        reasoning = getattr(c.message, "reasoning_content", None)
        assert reasoning is None or isinstance(reasoning, str), reasoning
        content, _, scalls, sfinish = streamed(
            client, model=model, messages=messages, tools=[WEATHER], tool_choice=choice, max_tokens=8, temperature=0
        )
        assert content == (c.message.content or ""), (content, c.message.content)
        assert scalls == [{**x, "id": y["id"]} for x, y in zip(calls, scalls)] and len(scalls) == len(calls), (scalls, calls)
        assert sfinish == c.finish_reason, (sfinish, c.finish_reason)

    if not calls:
        calls = [{"id": "call_1", "name": "get_weather", "arguments": json.dumps({"city": "Paris", "days": 2})}]
    history = messages + [
        {
            "role": "assistant",
            "content": c.message.content,
            "tool_calls": [
                {"id": x["id"], "type": "function", "function": {"name": x["name"], "arguments": x["arguments"]}}
                for x in calls
            ],
        }
    ]
    history += [{"role": "tool", "tool_call_id": x["id"], "content": "sunny, 21 C"} for x in calls]
    final = client.chat.completions.create(
        model=model, messages=history, tools=[WEATHER], max_tokens=8, temperature=0
    )
    assert final.usage.prompt_tokens > reply.usage.prompt_tokens
    content, _, _, finish = streamed(client, model=model, messages=history, tools=[WEATHER], max_tokens=8, temperature=0)
    assert content == (final.choices[0].message.content or "")
    assert finish == final.choices[0].finish_reason

    try:
        client.chat.completions.create(
            model=model,
            messages=messages,
            tools=[WEATHER],
            tool_choice={"type": "function", "function": {"name": "no_such_tool"}},
        )
        raise AssertionError("an unknown tool_choice function must fail")
    except openai.BadRequestError as e:
        assert e.status_code == 400 and e.body["param"] == "tool_choice", e.body


def main() -> None:
    base_url, model, key = sys.argv[1], sys.argv[2], sys.argv[3]
    client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0)

    assert [m.id for m in client.models.list().data] == [model]
    assert client.models.retrieve(model).id == model

    try:
        openai.OpenAI(base_url=base_url, api_key="not-the-key", max_retries=0).models.list()
        raise AssertionError("a wrong API key must fail")
    except openai.AuthenticationError as e:
        assert e.status_code == 401

    messages = [{"role": "user", "content": "Hello there"}]
    whole = client.chat.completions.create(
        model=model, messages=messages, max_tokens=8, temperature=0
    )
    choice = whole.choices[0]
    assert choice.message.role == "assistant"
    assert choice.finish_reason in ("stop", "length"), choice.finish_reason
    assert whole.usage.prompt_tokens > 0
    assert whole.usage.total_tokens == whole.usage.prompt_tokens + whole.usage.completion_tokens

    pieces, finish, usage = [], None, None
    for chunk in client.chat.completions.create(
        model=model,
        messages=messages,
        max_tokens=8,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    ):
        if chunk.usage is not None:
            usage = chunk.usage
        for c in chunk.choices:
            pieces.append(c.delta.content or "")
            finish = c.finish_reason or finish
    assert "".join(pieces) == choice.message.content, (pieces, choice.message.content)
    assert finish == choice.finish_reason
    assert usage is not None and usage.completion_tokens == whole.usage.completion_tokens

    legacy = client.completions.create(model=model, prompt="The quick brown fox", max_tokens=4, temperature=0)
    assert legacy.choices[0].finish_reason in ("stop", "length")

    # Structured output on a random-weight model: the grammar makes it valid.
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 8},
            "age": {"type": "integer", "minimum": 0, "maximum": 99},
            "pets": {"type": "array", "items": {"enum": ["cat", "dog"]}, "maxItems": 2},
        },
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    # n=3: each choice follows the grammar on its own.
    structured = client.chat.completions.create(
        model=model,
        messages=messages,
        max_tokens=2000,
        seed=5,
        temperature=1.0,
        n=3,
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema, "strict": True}},
    )
    assert sorted(c.index for c in structured.choices) == [0, 1, 2], structured
    for c in structured.choices:
        assert c.finish_reason == "stop", structured
        person = json.loads(c.message.content)
        assert set(person) <= {"name", "age", "pets"} and {"name", "age"} <= set(person), person
        assert isinstance(person["name"], str) and len(person["name"]) <= 8, person
        assert isinstance(person["age"], int) and 0 <= person["age"] <= 99, person
        assert all(p in ("cat", "dog") for p in person.get("pets", [])), person

    # tool_choice "required": a parsed call of the tool, even at random
    # weights, its string parameter matching the schema's pattern.
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 12},
            "days": {"type": "integer", "minimum": 1, "maximum": 7},
            "station": {"type": "string", "pattern": "^[A-Z]{4}$"},
        },
        "required": ["city", "days", "station"],
    }}}]
    forced = client.chat.completions.create(
        model=model, messages=messages, max_tokens=2000, seed=6, tools=tools, tool_choice="required"
    )
    assert forced.choices[0].finish_reason == "tool_calls", forced
    message = forced.choices[0].message
    assert message.tool_calls, message
    for tc in message.tool_calls:
        call = tc.function
        assert call.name == "get_weather", call
        args = json.loads(call.arguments)
        assert isinstance(args["city"], str) and isinstance(args["days"], int) and 1 <= args["days"] <= 7, args
        assert re.search("^[A-Z]{4}$", args["station"]), args

    try:
        client.chat.completions.create(model="no-such-model", messages=messages)
        raise AssertionError("an unknown model must fail")
    except openai.NotFoundError as e:
        assert e.status_code == 404

    # n=3: three different sampled completions of one prompt, prefilled once.
    lone = client.completions.create(model=model, prompt="The quick brown fox", max_tokens=6, temperature=1.0, seed=5)
    prefilled = metric(base_url, "qwgpu_prefill_tokens_total")
    three = client.completions.create(
        model=model,
        prompt="The quick brown fox",
        max_tokens=6,
        temperature=1.0,
        seed=5,
        n=3,
        extra_body={"ignore_eos": True},
    )
    texts = [c.text for c in sorted(three.choices, key=lambda c: c.index)]
    assert len(set(texts)) == 3, texts
    assert three.usage.prompt_tokens == lone.usage.prompt_tokens
    assert three.usage.completion_tokens == 18, three.usage
    # The prompt ran once (less its cached prefix), then one token per extra choice.
    cached = three.usage.prompt_tokens_details.cached_tokens
    ran = metric(base_url, "qwgpu_prefill_tokens_total") - prefilled
    assert ran == three.usage.prompt_tokens - cached + 2, (ran, three.usage)

    try:
        client.completions.create(model=model, prompt="hi", echo=True)
        raise AssertionError("echo must fail")
    except openai.BadRequestError as e:
        assert e.status_code == 400

    tool_loop(client, model)
    check_logprobs_and_penalties(client, model, messages)

    print("openai client: ok")


def check_logprobs_and_penalties(client, model, messages) -> None:
    """`logprobs` / `top_logprobs` in the client's types, whole and streamed;
    penalties accepted; out-of-range penalties refused with a 400. (The
    numbers are checked against a scoring pass in server.rs.)"""
    kw = dict(model=model, messages=messages, max_tokens=6, temperature=0,
              logprobs=True, top_logprobs=3, presence_penalty=0.5, frequency_penalty=0.2,
              extra_body={"repetition_penalty": 1.1, "min_p": 0.01})
    whole = client.chat.completions.create(**kw)
    content = whole.choices[0].logprobs.content
    assert len(content) == whole.usage.completion_tokens, (len(content), whole.usage)
    for e in content:
        assert e.logprob <= 0.0, e
        assert isinstance(e.bytes, list) and all(0 <= b < 256 for b in e.bytes), e
        assert len(e.top_logprobs) == 3, e
        tops = [t.logprob for t in e.top_logprobs]
        assert tops == sorted(tops, reverse=True), tops
        # Raw log-probabilities: the chosen token is at most the best one.
        assert e.logprob <= tops[0] + 1e-6, (e.logprob, tops)
    streamed = []
    for chunk in client.chat.completions.create(stream=True, **kw):
        for c in chunk.choices:
            if c.logprobs is not None and c.logprobs.content:
                streamed.extend(c.logprobs.content)
    assert [(e.token, e.bytes) for e in streamed] == [(e.token, e.bytes) for e in content]
    assert all(abs(a.logprob - b.logprob) < 1e-6 for a, b in zip(streamed, content))

    legacy = client.completions.create(model=model, prompt="The quick brown fox", max_tokens=4,
                                       temperature=0, logprobs=2)
    lp = legacy.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) > 0
    assert all(len(t) <= 2 for t in lp.top_logprobs), lp.top_logprobs
    assert lp.text_offset[0] == 0

    for field, value in [("presence_penalty", 3), ("frequency_penalty", -2.5)]:
        try:
            client.chat.completions.create(model=model, messages=messages, **{field: value})
            raise AssertionError(f"{field}={value} must fail")
        except openai.BadRequestError as e:
            assert e.status_code == 400 and field in str(e), e


if __name__ == "__main__":
    main()
