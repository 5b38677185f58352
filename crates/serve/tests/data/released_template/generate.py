#!/usr/bin/env python3
"""Expected renderings of the released Qwen3.5 chat template, by HF transformers.

Writes `cases.json` (every case's inputs) and `<case>.txt` (what transformers'
`apply_chat_template(..., tokenize=False)` renders: its
`render_jinja_template`, the same function and jinja environment) or
`<case>.err` (the `raise_exception` message) beside this script, for
`crates/serve/tests/released_template.rs`.

The template is read from `$QWGPU_CHAT_TEMPLATES_DIR/Qwen3.5.jinja`, else from
`../shared/templates/Qwen3.5.jinja` beside the workspace root; it is model
data and is never copied into the repository.

    pip install --user transformers jinja2   # no model download needed
    python3 crates/serve/tests/data/released_template/generate.py
"""

import copy
import json
import os
import sys
from pathlib import Path

import jinja2
import transformers
from transformers.utils.chat_template_utils import render_jinja_template

HERE = Path(__file__).resolve().parent


def template_path() -> Path:
    env = os.environ.get("QWGPU_CHAT_TEMPLATES_DIR")
    if env:
        return Path(env) / "Qwen3.5.jinja"
    for d in HERE.parents:
        cargo = d / "Cargo.toml"
        if cargo.is_file() and "[workspace]" in cargo.read_text():
            return d.parent / "shared" / "templates" / "Qwen3.5.jinja"
    sys.exit("no workspace root above " + str(HERE))


SYSTEM = {"role": "system", "content": "You are a helpful assistant.\n"}
USER_1 = {"role": "user", "content": "What is 2 + 2?"}
USER_2 = {"role": "user", "content": "  And the weather in Paris?  "}
USER_3 = {"role": "user", "content": "Thanks! Summarise in one line."}

# Content-only conversations (what the project's `Message {role, content}`
# can carry). Reasoning inline as `<think>...</think>`: the template splits it
# off, and keeps it only for assistant turns after the last user query.
CHAT = [
    SYSTEM,
    USER_1,
    {"role": "assistant", "content": "<think>\nSimple arithmetic.\n</think>\n\n2 + 2 = 4."},
    {"role": "user", "content": "And 3 + 3?"},
    {"role": "assistant", "content": "6."},
    USER_3,
]
AGENT_INLINE = [
    SYSTEM,
    USER_2,
    {
        "role": "assistant",
        "content": "<think>\nI should look it up.\n</think>\n\nLet me check the forecast.",
    },
    {"role": "tool", "content": '{"city": "Paris", "temp_c": 18}'},
    {"role": "tool", "content": "Light rain after 16:00."},
    {
        "role": "assistant",
        "content": "<think>\n\nTwo results; combine them.\n\n</think>\n\n18 °C, light rain later.",
    },
]

# The full agentic turn: `reasoning_content` as its own field, tool calls
# (arguments of several JSON types), tool responses, then a user turn.
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "City name"},
                    "units": {"type": "string", "enum": ["c", "f"]},
                },
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "search",
            "description": "Web search.",
            "parameters": {
                "type": "object",
                "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}},
            },
        },
    },
]
AGENT_FULL = [
    SYSTEM,
    USER_1,
    {"role": "assistant", "reasoning_content": "Easy.", "content": "4."},
    USER_2,
    {
        "role": "assistant",
        "reasoning_content": "\nI need the forecast.\n",
        "content": "Checking.",
        "tool_calls": [
            {
                "type": "function",
                "function": {"name": "get_weather", "arguments": {"city": "Paris", "units": "c"}},
            },
            {
                "type": "function",
                "function": {
                    "name": "search",
                    "arguments": {"query": "Paris rain", "limit": 3, "filters": {"lang": ["fr", "en"]}},
                },
            },
        ],
    },
    {"role": "tool", "content": '{"temp_c": 18}'},
    {"role": "tool", "content": "Light rain after 16:00."},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"function": {"name": "search", "arguments": {"query": "umbrella"}}}],
    },
    {"role": "tool", "content": "Bring one."},
    {"role": "assistant", "reasoning_content": "Done.", "content": "18 °C, rain later: take an umbrella."},
    USER_3,
]

# A conversation as an OpenAI client sends it: content as text parts (and
# null), call ids, tool turns with `tool_call_id` / `name`, and `arguments`
# as JSON strings (with every JSON type; an empty one is `{}`). transformers
# wants argument objects, so these are parsed first as vLLM does
# (`vllm_postprocess`); cases.json keeps the strings, as a client sent them.
CONVERT = {
    "type": "function",
    "function": {
        "name": "convert",
        "parameters": {
            "type": "object",
            "properties": {"value": {"type": "number"}, "to": {"type": "array", "items": {"type": "string"}}},
            "required": ["value"],
        },
        "description": "Unit conversion.",
    },
}
AGENT_OPENAI = [
    {"role": "system", "content": [{"type": "text", "text": "You are terse."}]},
    {
        "role": "user",
        "content": [{"type": "text", "text": "Convert "}, {"type": "text", "text": "1.5 km, exactly?"}],
    },
    {
        "role": "assistant",
        "content": None,
        "reasoning_content": "Use the tool.",
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {
                    "name": "convert",
                    "arguments": '{"value": 1.5, "exact": true, "unit": null, "to": ["mi", "ft"], "precision": 3, "tolerance": 0.00001, "meta": {"z": 0, "a": false}}',
                },
            },
            {"id": "call_2", "type": "function", "function": {"name": "now", "arguments": ""}},
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "name": "convert", "content": "0.932 mi"},
    {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "12:00"}]},
]


def vllm_postprocess(messages):
    """vLLM's `_postprocess_messages`: tool-call `arguments` given as a JSON
    string become an object (an empty or missing one, `{}`)."""
    messages = copy.deepcopy(messages)
    for m in messages:
        if m["role"] == "assistant" and isinstance(m.get("tool_calls"), list):
            for call in m["tool_calls"]:
                args = call["function"].get("arguments")
                if args:
                    if not isinstance(args, (dict, list)):
                        call["function"]["arguments"] = json.loads(args)
                else:
                    call["function"]["arguments"] = {}
    return messages


def cases():
    out = []
    for conv_name, messages, tools in [
        ("chat", CHAT, None),
        ("agent_inline", AGENT_INLINE, None),
        ("agent_full_tools", AGENT_FULL, TOOLS),
        # Ending in the agent's turn: its reasoning since the last query shows.
        ("agent_open_tools", AGENT_FULL[:-1], TOOLS),
    ]:
        for thinking in [None, True, False]:
            for gen in [True, False]:
                t = {None: "unset", True: "on", False: "off"}[thinking]
                case = {
                    "name": f"{conv_name}_thinking_{t}_{'gen' if gen else 'nogen'}",
                    "messages": messages,
                    "add_generation_prompt": gen,
                }
                if thinking is not None:
                    case["enable_thinking"] = thinking
                if tools is not None:
                    case["tools"] = tools
                out.append(case)
    # Tools given, a plain conversation.
    out.append(
        {
            "name": "tools_plain_chat_gen",
            "messages": [SYSTEM, USER_1],
            "tools": TOOLS,
            "add_generation_prompt": True,
        }
    )
    for gen in [True, False]:
        out.append(
            {
                "name": f"agent_openai_{'gen' if gen else 'nogen'}",
                "messages": AGENT_OPENAI,
                "tools": [CONVERT],
                "add_generation_prompt": gen,
            }
        )
    # The template's own refusals.
    out.append({"name": "error_no_user_query", "messages": [SYSTEM], "add_generation_prompt": True})
    out.append(
        {
            "name": "error_system_not_first",
            "messages": [USER_1, SYSTEM],
            "add_generation_prompt": False,
        }
    )
    return out


def main():
    source = template_path().read_text(encoding="utf-8")
    all_cases = cases()
    for case in all_cases:
        kwargs = {}
        if "enable_thinking" in case:
            kwargs["enable_thinking"] = case["enable_thinking"]
        for ext in ("txt", "err"):
            (HERE / f"{case['name']}.{ext}").unlink(missing_ok=True)
        try:
            # (one rendering per conversation, generation indices)
            rendered, _ = render_jinja_template(
                conversations=[vllm_postprocess(case["messages"])],
                tools=case.get("tools"),
                chat_template=source,
                add_generation_prompt=case["add_generation_prompt"],
                **kwargs,
            )
            (text,) = rendered
            (HERE / f"{case['name']}.txt").write_bytes(text.encode("utf-8"))
        except jinja2.exceptions.TemplateError as e:
            (HERE / f"{case['name']}.err").write_bytes(str(e).encode("utf-8"))
    (HERE / "cases.json").write_text(
        json.dumps(
            {
                "generator": f"transformers {transformers.__version__}, jinja2 {jinja2.__version__}",
                "cases": all_cases,
            },
            indent=1,
            ensure_ascii=False,
        )
        + "\n",
        encoding="utf-8",
    )
    print(f"{len(all_cases)} cases written to {HERE}")


if __name__ == "__main__":
    main()
