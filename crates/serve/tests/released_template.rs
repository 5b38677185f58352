//! The Qwen3.5 chat template as released (`Qwen3.5.jinja` in the shared
//! templates folder beside the checkout, never copied into the repository)
//! rendered by [`ChatTemplate`] is byte-for-byte what HF transformers renders:
//! the expected strings and their inputs are in `tests/data/released_template`
//! (`cases.json`, `<case>.txt`, `<case>.err`), written by `generate.py` there
//! with transformers' own `render_jinja_template`. Every case's `messages`
//! and `tools` are read as the server reads a request's (so key order,
//! `reasoning_content`, `tool_calls` and tool turns reach the template as
//! they would from a client); a case that cannot be read fails. A second test
//! sends tool-call conversations to the server and checks it prefills
//! exactly the token ids of transformers' rendering.
//!
//! The folder is `$QWGPU_CHAT_TEMPLATES_DIR`, else `../shared/templates` beside
//! the workspace root. Without it the tests fail, unless
//! `QWGPU_ALLOW_MISSING_TEMPLATES=1` (what `.ci/run` sets when the folder is
//! not there): then they are recorded as skipped for "template file missing"
//! in the coverage table `cargo xtask ci` prints (`QWGPU_COVERAGE_DIR`), and
//! pass; `QWGPU_REQUIRE_TEMPLATES` makes them fail even then.

use std::path::{Path, PathBuf};

use qwgpu_kernels::testing::{self, Outcome};
use qwgpu_serve::chat_request;
use qwgpu_serve::chat_template::{ChatTemplate, Message, RenderOptions};
use qwgpu_serve::ordered_json::Json;

mod support;

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

/// Why a template test did not run, in the coverage table.
const MISSING: &str = "template file missing";
/// The coverage table's column of the template tests (they use no GPU).
const COLUMN: &str = "host";

/// Where the released template was looked for and what the environment allows.
struct Lookup {
    /// `$QWGPU_CHAT_TEMPLATES_DIR`, if set: it must hold the template.
    named: Option<PathBuf>,
    /// The folder otherwise: `../shared/templates` beside the workspace root.
    beside: PathBuf,
    /// `QWGPU_ALLOW_MISSING_TEMPLATES=1`.
    allow_missing: bool,
    /// `QWGPU_REQUIRE_TEMPLATES` (set: missing fails even when allowed).
    require: bool,
}

impl Lookup {
    fn from_env() -> Self {
        Self {
            named: std::env::var_os("QWGPU_CHAT_TEMPLATES_DIR")
                .filter(|d| !d.is_empty())
                .map(PathBuf::from),
            beside: workspace_root().join("../shared/templates"),
            allow_missing: std::env::var("QWGPU_ALLOW_MISSING_TEMPLATES").is_ok_and(|v| v == "1"),
            require: env_set("QWGPU_REQUIRE_TEMPLATES"),
        }
    }

    /// `Ok(Some(..))`: the template's source and path; `Ok(None)`: missing,
    /// and allowed to be (a skip); `Err`: missing where it must not be, why.
    fn find(&self) -> Result<Option<(String, PathBuf)>, String> {
        let (dir, how) = match &self.named {
            Some(d) => (d.clone(), "QWGPU_CHAT_TEMPLATES_DIR"),
            None => (
                self.beside.clone(),
                "../shared/templates beside the workspace root",
            ),
        };
        let path = dir.join(TEMPLATE);
        let e = match std::fs::read_to_string(&path) {
            Ok(source) => return Ok(Some((source, path))),
            Err(e) => e,
        };
        let missing = format!(
            "the released chat template is missing: {path}: {e} ({how}); put the shared \
             templates folder beside the checkout or set QWGPU_CHAT_TEMPLATES_DIR",
            path = path.display(),
        );
        if self.named.is_some() {
            // An explicitly named folder must hold the template.
            return Err(missing);
        }
        if self.require {
            return Err(format!(
                "{missing}\nQWGPU_REQUIRE_TEMPLATES is set: the template test cannot run."
            ));
        }
        if !self.allow_missing {
            let ci = if env_set("CI") { " (CI is set)" } else { "" };
            return Err(format!(
                "{missing}\nThe template test fails without it{ci}; \
                 QWGPU_ALLOW_MISSING_TEMPLATES=1 records it as skipped (\"{MISSING}\" in the \
                 coverage table) instead."
            ));
        }
        eprintln!("{missing}\nQWGPU_ALLOW_MISSING_TEMPLATES=1: recorded as skipped ({MISSING}).");
        Ok(None)
    }
}

/// The released template's source, or `None` when the folder is missing and
/// that is allowed ([`Lookup::find`]). Either way the calling test is
/// recorded in the coverage table (`QWGPU_COVERAGE_DIR`): ran, skipped for
/// "template file missing", or failed for it (and panics).
fn released_template() -> Option<(String, PathBuf)> {
    let found = Lookup::from_env().find();
    let outcome = match &found {
        Ok(Some(_)) => Outcome::Ran,
        Ok(None) => Outcome::Skipped {
            missing: MISSING,
            on_purpose: false,
        },
        Err(_) => Outcome::Failed { missing: MISSING },
    };
    testing::record_host(COLUMN, outcome);
    found.unwrap_or_else(|e| panic!("{e}"))
}

/// A missing template fails the test unless `QWGPU_ALLOW_MISSING_TEMPLATES=1`
/// (then it is a skip, recorded), and always when its folder was named or
/// `QWGPU_REQUIRE_TEMPLATES` is set; a present one is found either way.
#[test]
fn a_missing_template_fails_unless_allowed_and_then_is_a_skip() {
    let nowhere = std::env::temp_dir().join(format!(
        "qwgpu-no-templates-{pid}/shared/templates",
        pid = std::process::id()
    ));
    let lookup = |named: Option<PathBuf>, allow_missing, require| Lookup {
        named,
        beside: nowhere.clone(),
        allow_missing,
        require,
    };
    let err = lookup(None, false, false).find().unwrap_err();
    assert!(
        err.contains("missing") && err.contains("QWGPU_ALLOW_MISSING_TEMPLATES=1"),
        "{err}"
    );
    assert_eq!(lookup(None, true, false).find(), Ok(None));
    assert!(lookup(None, true, true).find().is_err());
    assert!(lookup(Some(nowhere.clone()), true, false).find().is_err());
    // A folder that holds it: found, allowed to be missing or not.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join(TEMPLATE), "{{ 1 }}").expect("template");
    let here = Lookup {
        beside: dir.path().to_path_buf(),
        ..lookup(None, false, false)
    };
    let (source, path) = here.find().unwrap().expect("found");
    assert_eq!(
        (source.as_str(), path),
        ("{{ 1 }}", dir.path().join(TEMPLATE))
    );
}

/// Every case in `cases.json`, keys in the order written.
fn cases() -> Vec<Json> {
    let cases =
        Json::parse(&std::fs::read_to_string(data_dir().join("cases.json")).expect("cases.json"))
            .expect("cases.json is JSON");
    match cases.get("cases") {
        Some(Json::Array(cases)) => cases.clone(),
        _ => panic!("cases.json: no `cases` list"),
    }
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
    let cases = cases();
    let (mut rendered, mut refused) = (0, 0);
    let mut with_tools = 0;
    let mut failures = Vec::new();
    for case in &cases {
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

/// The server's chat endpoint, given a tool-call conversation as a client
/// sends it (`tools`, assistant `tool_calls` with JSON-string arguments,
/// `reasoning_content`, `tool` turns, text parts, `chat_template_kwargs`),
/// prefills exactly the token ids of transformers' rendering: its prompt
/// snapshot (the prefix cache keeps one per prompt) is what a completion of
/// those ids + one more restores, which it can only be if every id agrees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_call_request_prefills_the_tokens_of_transformers_rendering() {
    let Some((source, _)) = released_template() else {
        return;
    };
    // A model folder in a temp dir: the tiny fixture with the released
    // template as its chat_template.jinja (the copy is deleted with the dir).
    let s = support::server_with(Some(&source), |_| {}).await;
    let tokenizer =
        tokenizers::Tokenizer::from_file(s.dir().join("tokenizer.json")).expect("tokenizer");
    let post = |path: &'static str, body: Vec<u8>| {
        let s = &s;
        async move {
            let (status, v) = s.post_raw(path, body).await;
            assert_eq!(status, reqwest::StatusCode::OK, "{v}");
            v
        }
    };

    let cases = cases();
    for name in ["agent_openai_gen", "agent_full_tools_thinking_off_gen"] {
        let case = cases
            .iter()
            .find(|c| c.get("name").and_then(Json::as_str) == Some(name))
            .unwrap_or_else(|| panic!("{name} is not in cases.json"));
        let mut body = vec![
            ("model".to_owned(), Json::String("tiny".into())),
            (
                "messages".to_owned(),
                case.get("messages").expect("messages").clone(),
            ),
            (
                "tools".to_owned(),
                case.get("tools").expect("tools").clone(),
            ),
            ("max_tokens".to_owned(), Json::Number(1.into())),
            ("temperature".to_owned(), Json::Number(0.into())),
        ];
        if let Some(on) = case.get("enable_thinking") {
            let kwargs = Json::Object(vec![("enable_thinking".to_owned(), on.clone())]);
            body.push(("chat_template_kwargs".to_owned(), kwargs));
        }
        // Serialised in the order written: tool schemas keep their key order.
        let body = serde_json::to_vec(&Json::Object(body)).expect("body");
        let chat = post("/v1/chat/completions", body).await;

        let want = std::fs::read_to_string(data_dir().join(format!("{name}.txt"))).expect("txt");
        let ids = tokenizer
            .encode(want.as_str(), false)
            .expect("encode")
            .get_ids()
            .to_vec();
        assert_eq!(
            chat["usage"]["prompt_tokens"].as_u64(),
            Some(ids.len() as u64),
            "{name}: {chat}"
        );
        let mut longer = ids.clone();
        longer.push(ids[0]);
        let completion = serde_json::json!({"model": "tiny", "prompt": longer, "max_tokens": 1, "temperature": 0});
        let v = post(
            "/v1/completions",
            serde_json::to_vec(&completion).expect("body"),
        )
        .await;
        assert_eq!(
            v["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64(),
            Some(ids.len() as u64),
            "{name}: the chat prompt's ids differ from transformers' rendering's ({v})"
        );
    }
}
