"""The official `openai` Python client against a running `qwgpu serve`.

Usage: python3 openai_client.py BASE_URL MODEL API_KEY   (BASE_URL ends with /v1)
Run by crates/serve/tests/server.rs when `import openai` works.
"""

import sys

import openai


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

    try:
        client.chat.completions.create(model="no-such-model", messages=messages)
        raise AssertionError("an unknown model must fail")
    except openai.NotFoundError as e:
        assert e.status_code == 404

    # n=3: three different sampled completions of one prompt, prefilled once.
    lone = client.completions.create(model=model, prompt="The quick brown fox", max_tokens=6, temperature=1.0, seed=5)
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

    try:
        client.completions.create(model=model, prompt="hi", echo=True)
        raise AssertionError("echo must fail")
    except openai.BadRequestError as e:
        assert e.status_code == 400

    print("openai client: ok")


if __name__ == "__main__":
    main()
