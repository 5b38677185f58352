"""Expected renderings of the chat templates in this folder, made by HF
transformers' own apply_chat_template (qwgpu's renderer must match them byte
for byte: crates/cli/src/chat_template.rs tests).

    python3 -m venv /tmp/hfenv && /tmp/hfenv/bin/pip install transformers jinja2
    /tmp/hfenv/bin/python crates/cli/tests/data/chat/make_chat_expected.py [TEMPLATE.jinja ...]

Without arguments every *.jinja here is rendered. For each template T.jinja
it writes T.thinking-on.txt, T.thinking-off.txt and T.thinking-unset.txt: the
conversation in conversation.json with add_generation_prompt=True and
enable_thinking True, False, or not passed. The tokenizer is the dense BF16
fixture's, with its tokenizer_config.json's special tokens (no torch needed).
"""

import json
import pathlib
import sys

from transformers import PreTrainedTokenizerFast

HERE = pathlib.Path(__file__).resolve().parent
FIXTURE = HERE.parents[4] / "tests" / "fixtures" / "dense-bf16-text"


def main() -> None:
    templates = [pathlib.Path(p) for p in sys.argv[1:]] or sorted(HERE.glob("*.jinja"))
    conversation = json.loads((HERE / "conversation.json").read_text(encoding="utf-8"))
    config = json.loads((FIXTURE / "tokenizer_config.json").read_text(encoding="utf-8"))
    special = {k: config[k] for k in ("bos_token", "eos_token", "pad_token") if config.get(k)}
    for path in templates:
        tok = PreTrainedTokenizerFast(
            tokenizer_file=str(FIXTURE / "tokenizer.json"),
            chat_template=path.read_text(encoding="utf-8"),
            **special,
        )
        for name, kwargs in [
            ("on", {"enable_thinking": True}),
            ("off", {"enable_thinking": False}),
            ("unset", {}),
        ]:
            text = tok.apply_chat_template(
                conversation, tokenize=False, add_generation_prompt=True, **kwargs
            )
            out = path.with_name(f"{path.stem}.thinking-{name}.txt")
            out.write_bytes(text.encode("utf-8"))
            print(f"wrote {out} ({len(text)} chars)")


if __name__ == "__main__":
    main()
