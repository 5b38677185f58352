//! The Qwen3.5 chat template as released (`Qwen3.5.jinja` in the shared
//! templates folder beside the checkout, never copied into the repository)
//! rendered by [`ChatTemplate`] is byte-for-byte what HF transformers renders:
//! the expected strings and their inputs are in `tests/data/released_template`
//! (`cases.json`, `<case>.txt`, `<case>.err`), written by `generate.py` there
//! with transformers' own `render_jinja_template`. Every case's `messages`
//! and `tools` are read as the server reads a request's (so key order,
//! `reasoning_content`, `tool_calls` and tool turns reach the template as
//! they would from a client); a case that cannot be read fails.
//!
//! The folder is `$QWGPU_CHAT_TEMPLATES_DIR`, else `../shared/templates` beside
//! the workspace root. Without it the test fails, unless
//! `QWGPU_ALLOW_MISSING_TEMPLATES=1` (what `.ci/run` sets, with a banner, when
//! the folder is not there); `QWGPU_REQUIRE_TEMPLATES` makes it fail even then.

use std::path::{Path, PathBuf};

use qwgpu_serve::chat_request;
use qwgpu_serve::chat_template::{ChatTemplate, Message, RenderOptions};
use qwgpu_serve::ordered_json::Json;

const TEMPLATE: &str = "Qwen3.5.jinja";

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/released_template")
}

/// The workspace root: the first folder above this crate whose `Cargo.toml`
/// has a `[workspace]` table.
fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .find(|d| {
            std::fs::read_to_string(d.join("Cargo.toml"))
                .is_ok_and(|t| t.lines().any(|l| l.trim() == "[workspace]"))
        })
        .unwrap_or_else(|| panic!("no workspace Cargo.toml above {}", here.display()))
        .to_path_buf()
}

fn env_set(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| !v.is_empty())
}

/// The released template's source, or `None` when the folder is missing and
/// that is allowed (`QWGPU_ALLOW_MISSING_TEMPLATES=1`, without
/// `QWGPU_REQUIRE_TEMPLATES`).
fn released_template() -> Option<(String, PathBuf)> {
    let (dir, how) = match std::env::var_os("QWGPU_CHAT_TEMPLATES_DIR") {
        Some(d) if !d.is_empty() => (PathBuf::from(d), "QWGPU_CHAT_TEMPLATES_DIR"),
        _ => (
            workspace_root().join("../shared/templates"),
            "../shared/templates beside the workspace root",
        ),
    };
    let path = dir.join(TEMPLATE);
    match std::fs::read_to_string(&path) {
        Ok(source) => return Some((source, path)),
        // An explicitly named folder must hold the template.
        Err(e) if how == "QWGPU_CHAT_TEMPLATES_DIR" => {
            panic!("{}: {e} (from {how})", path.display())
        }
        Err(_) => {}
    }
    let banner = format!(
        "\n{line}\nTHE RELEASED CHAT TEMPLATE IS MISSING: {path} ({how}).\n\
         Put the shared templates folder beside the checkout or set QWGPU_CHAT_TEMPLATES_DIR.\n{line}",
        line = "!".repeat(78),
        path = path.display(),
    );
    let allowed = std::env::var("QWGPU_ALLOW_MISSING_TEMPLATES").is_ok_and(|v| v == "1");
    if env_set("QWGPU_REQUIRE_TEMPLATES") {
        panic!("{banner}\nQWGPU_REQUIRE_TEMPLATES is set: the template test cannot run.");
    }
    if !allowed {
        let ci = if env_set("CI") { " (CI is set)" } else { "" };
        panic!(
            "{banner}\nThe template test fails without it{ci}; \
             QWGPU_ALLOW_MISSING_TEMPLATES=1 lets it pass unchecked."
        );
    }
    eprintln!("{banner}\nQWGPU_ALLOW_MISSING_TEMPLATES=1: the released template is NOT checked.");
    None
}

/// The case's messages and tools, read like a chat request's.
fn inputs(case: &Json) -> Result<(Vec<Message>, Vec<Json>), String> {
    let messages = chat_request::messages(case).map_err(|e| e.message)?;
    let tools = chat_request::tools(case).map_err(|e| e.message)?;
    Ok((messages, tools))
}

fn options(case: &Json) -> RenderOptions {
    let flag = |key: &str| match case.get(key) {
        None => None,
        Some(Json::Bool(b)) => Some(*b),
        Some(other) => panic!("`{key}` must be a boolean, got {other:?}"),
    };
    RenderOptions {
        add_generation_prompt: flag("add_generation_prompt").expect("add_generation_prompt"),
        enable_thinking: flag("enable_thinking"),
    }
}

/// Where `got` and `want` first differ, with some context of each.
fn first_difference(got: &str, want: &str) -> String {
    let at = got
        .bytes()
        .zip(want.bytes())
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    let around = |s: &str| {
        let mut lo = at.saturating_sub(60).min(s.len());
        while !s.is_char_boundary(lo) {
            lo -= 1;
        }
        let mut hi = (at + 60).min(s.len());
        while !s.is_char_boundary(hi) {
            hi += 1;
        }
        format!("{:?}", &s[lo..hi])
    };
    format!(
        "first difference at byte {at} (lengths: got {got_len}, want {want_len})\n  got:  {got_ctx}\n  want: {want_ctx}",
        got_len = got.len(),
        want_len = want.len(),
        got_ctx = around(got),
        want_ctx = around(want),
    )
}

#[test]
fn the_released_qwen3_5_template_renders_byte_for_byte_like_transformers() {
    let Some((source, path)) = released_template() else {
        return;
    };
    let template = ChatTemplate::from_source(source, path.display().to_string())
        .unwrap_or_else(|e| panic!("{e}"));
    let cases =
        Json::parse(&std::fs::read_to_string(data_dir().join("cases.json")).expect("cases.json"))
            .expect("cases.json is JSON");
    let Some(Json::Array(cases)) = cases.get("cases") else {
        panic!("cases.json: no `cases` list")
    };
    let (mut rendered, mut refused) = (0, 0);
    let mut with_tools = 0;
    let mut failures = Vec::new();
    for case in cases {
        let name = case.get("name").and_then(Json::as_str).expect("name");
        let (msgs, tools) = match inputs(case) {
            Ok(x) => x,
            Err(e) => {
                failures.push(format!("{name}: its inputs cannot be expressed: {e}"));
                continue;
            }
        };
        with_tools += usize::from(!tools.is_empty());
        let result = template.render_with_tools(&msgs, &tools, &options(case));
        let txt = data_dir().join(format!("{name}.txt"));
        let err = data_dir().join(format!("{name}.err"));
        match (result, txt.is_file()) {
            (Ok(got), true) => {
                let want = std::fs::read_to_string(&txt).expect("expected rendering");
                if got != want {
                    let diff = first_difference(&got, &want);
                    failures.push(format!("{name}: {diff}"));
                }
                rendered += 1;
            }
            (Err(e), false) => {
                let want = std::fs::read_to_string(&err)
                    .unwrap_or_else(|e| panic!("{name}: neither .txt nor .err: {e}"));
                let msg = e.to_string();
                if !msg.contains(&format!(
                    "the chat template refused the conversation: {want}"
                )) {
                    failures.push(format!(
                        "{name}: error {msg:?}, transformers raised {want:?}"
                    ));
                }
                refused += 1;
            }
            (Ok(got), false) => {
                let raised = std::fs::read_to_string(&err).unwrap_or_default();
                failures.push(format!(
                    "{name}: rendered {got:?}, transformers raised {raised:?}"
                ))
            }
            (Err(e), true) => failures.push(format!("{name}: {e}, transformers rendered it")),
        }
    }
    println!(
        "{path}: {rendered} renderings equal ({with_tools} with tools), {refused} refusals equal",
        path = path.display(),
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(
        rendered == cases.len() - 2 && refused == 2 && with_tools >= 15,
        "{rendered} rendered ({with_tools} with tools), {refused} refused of {total} cases",
        total = cases.len()
    );
}
