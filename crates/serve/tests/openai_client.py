"""The official `openai` Python client against a running `qwgpu serve`.

Usage: python3 openai_client.py BASE_URL MODEL   (BASE_URL ends with /v1)
Run by crates/serve/tests/server.rs when `import openai` works.
"""

import sys

import openai


def main() -> None:
    base_url, model = sys.argv[1], sys.argv[2]
    client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)

    assert [m.id for m in client.models.list().data] == [model]

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

    try:
        client.chat.completions.create(model=model, messages=messages, n=2)
        raise AssertionError("n=2 must fail")
    except openai.BadRequestError as e:
        assert e.status_code == 400

    print("openai client: ok")


if __name__ == "__main__":
    main()
