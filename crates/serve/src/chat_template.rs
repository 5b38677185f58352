//! Chat templates as Hugging Face releases ship them, rendered the way
//! transformers' `apply_chat_template` renders them: Jinja with
//! `trim_blocks` and `lstrip_blocks`, Python string and dict methods
//! (`startswith`, `split`, `rstrip`, `items`, ...), `tojson` spelled like
//! `json.dumps`, `raise_exception(msg)`, loop controls, the tokenizer's
//! special tokens as variables, and `add_generation_prompt` /
//! `enable_thinking` / `tools` (absent) like HF passes them.
//!
//! Where the template comes from, first found wins (as in transformers):
//! `chat_template.jinja`, `tokenizer_config.json`'s `chat_template` (a string,
//! or a list of `{name, template}` of which `default` is used), then
//! `chat_template.json`'s `chat_template`.

use std::path::Path;

use minijinja::{Environment, Error, ErrorKind, Value};

use crate::py_json;

/// Why a template could not be found, parsed or rendered; the message names
/// the file the template came from.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid JSON: {source}")]
    Json {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    /// Not a regular file (a FIFO, a device, a directory), too large, not UTF-8.
    #[error("{0}")]
    File(#[from] qwgpu_checkpoint::CheckpointError),
    /// The folder has no template in any of the places looked at (every
    /// file there that exists was read and parsed).
    #[error("{dir}: no chat template (looked for chat_template.jinja, `chat_template` in tokenizer_config.json and chat_template.json); run without --chat for plain completion")]
    Missing { dir: String },
    /// Anything else: no template, a malformed entry, a syntax or render error.
    #[error("{0}")]
    Invalid(String),
}

type Result<T> = std::result::Result<T, TemplateError>;

macro_rules! bail {
    ($($arg:tt)*) => {
        return Err(TemplateError::Invalid(format!($($arg)*)))
    };
}

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: &str, content: &str) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// What the caller passes besides the messages.
#[derive(Debug, Clone, Copy, Default)]
pub struct RenderOptions {
    /// End with the header of the assistant's turn, ready for its answer.
    pub add_generation_prompt: bool,
    /// Qwen3.5's thinking switch; `None` leaves it undefined (the template's
    /// default: thinking on).
    pub enable_thinking: Option<bool>,
}

/// A parsed chat template, ready to render conversations.
pub struct ChatTemplate {
    env: Environment<'static>,
    /// Where it came from, for errors (`/m/tokenizer_config.json`).
    origin: String,
    /// `bos_token`, `eos_token`, ... from `tokenizer_config.json`.
    special_tokens: Vec<(String, String)>,
}

/// The message a template gave `raise_exception`, carried through
/// minijinja's error as its source so the user sees the template's words.
#[derive(Debug)]
struct Raised(String);

impl std::fmt::Display for Raised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Raised {}

const NAME: &str = "chat_template";

/// Special tokens transformers passes to every template (its `special_tokens_map`).
const SPECIAL_TOKENS: [&str; 7] = [
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
];

impl ChatTemplate {
    /// The template of a model folder (see the module docs for the search
    /// order), with the special tokens of its `tokenizer_config.json`.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let config_path = dir.join("tokenizer_config.json");
        let config = read_json_if_present(&config_path)?;
        let jinja = dir.join("chat_template.jinja");
        // Anything by that name is read (and refused when not a regular file):
        // a FIFO or a dangling link must not pass for "no template".
        let (source, origin) = if present(&jinja) {
            let text = read_small(&jinja)?;
            (text, jinja.display().to_string())
        } else if let Some(t) = config.as_ref().and_then(|c| c.get("chat_template")) {
            (
                pick_template(t, &config_path)?,
                config_path.display().to_string(),
            )
        } else {
            let json_path = dir.join("chat_template.json");
            match read_json_if_present(&json_path)?
                .as_ref()
                .and_then(|c| c.get("chat_template"))
            {
                Some(t) => (
                    pick_template(t, &json_path)?,
                    json_path.display().to_string(),
                ),
                None => {
                    return Err(TemplateError::Missing {
                        dir: dir.display().to_string(),
                    })
                }
            }
        };
        let mut t = Self::from_source(source, origin)?;
        if let Some(config) = &config {
            t.special_tokens = special_tokens(config);
        }
        Ok(t)
    }

    /// Parses a template's source; `origin` names it in errors.
    pub fn from_source(source: String, origin: String) -> Result<Self> {
        let mut env = Environment::new();
        // transformers' template environment: ImmutableSandboxedEnvironment(
        // trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols]).
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_filter("tojson", py_json::tojson);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<Value, Error> {
                Err(Error::new(ErrorKind::InvalidOperation, msg.clone()).with_source(Raised(msg)))
            },
        );
        env.add_template_owned(NAME, source).map_err(|e| {
            TemplateError::Invalid(format!("{origin}: parsing the chat template: {e:#}"))
        })?;
        Ok(Self {
            env,
            origin,
            special_tokens: Vec::new(),
        })
    }

    /// Where the template was read from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Renders `messages` like `apply_chat_template(messages, tokenize=False, ...)`.
    pub fn render(&self, messages: &[Message], opts: &RenderOptions) -> Result<String> {
        let msgs: Vec<Value> = messages
            .iter()
            .map(|m| minijinja::context! { role => m.role, content => m.content })
            .collect();
        let mut vars: Vec<(String, Value)> = vec![
            ("messages".into(), Value::from(msgs)),
            ("tools".into(), Value::from(())),
            ("documents".into(), Value::from(())),
            (
                "add_generation_prompt".into(),
                Value::from(opts.add_generation_prompt),
            ),
        ];
        if let Some(on) = opts.enable_thinking {
            vars.push(("enable_thinking".into(), Value::from(on)));
        }
        for (k, v) in &self.special_tokens {
            vars.push((k.clone(), Value::from(v.as_str())));
        }
        let ctx: Value = vars.into_iter().collect();
        let template = self
            .env
            .get_template(NAME)
            .map_err(|e| self.render_error(&e))?;
        template.render(ctx).map_err(|e| self.render_error(&e))
    }

    fn render_error(&self, e: &Error) -> TemplateError {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(c) = cause {
            if let Some(Raised(msg)) = c.downcast_ref::<Raised>() {
                let origin = &self.origin;
                return TemplateError::Invalid(format!(
                    "{origin}: the chat template refused the conversation: {msg}"
                ));
            }
            cause = c.source();
        }
        let origin = &self.origin;
        TemplateError::Invalid(format!("{origin}: rendering the chat template: {e:#}"))
    }
}

/// A model folder's small text file, refused before reading when it is not a
/// regular file (a FIFO would block, a device would never end) or too large.
fn read_small(path: &Path) -> Result<String> {
    use qwgpu_checkpoint::files::{read_text_file, MAX_CONFIG_BYTES};
    Ok(read_text_file(path, MAX_CONFIG_BYTES)?)
}

/// Whether anything exists at `path` (a dangling link counts: reading it
/// then says why it cannot be read).
fn present(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

fn read_json_if_present(path: &Path) -> Result<Option<serde_json::Value>> {
    if !present(path) {
        return Ok(None);
    }
    let text = read_small(path)?;
    let json = serde_json::from_str(&text).map_err(|source| TemplateError::Json {
        path: path.display().to_string(),
        source,
    })?;
    Ok(Some(json))
}

/// A `chat_template` entry: a string, or transformers' list of named templates
/// (`[{"name": "default", "template": ...}, {"name": "tool_use", ...}]`).
fn pick_template(t: &serde_json::Value, path: &Path) -> Result<String> {
    let shown = path.display();
    match t {
        serde_json::Value::String(s) => Ok(s.clone()),
        serde_json::Value::Array(list) => {
            let mut names = Vec::new();
            for entry in list {
                let name = entry.get("name").and_then(|n| n.as_str());
                let template = entry.get("template").and_then(|n| n.as_str());
                match (name, template) {
                    (Some("default"), Some(t)) => return Ok(t.to_owned()),
                    (Some(n), Some(_)) => names.push(n.to_owned()),
                    _ => bail!(
                        "{shown}: `chat_template` list entries must be {{\"name\": ..., \"template\": ...}}, got {entry}"
                    ),
                }
            }
            let names = names.join(", ");
            bail!("{shown}: `chat_template` has no template named \"default\" (it has: {names})")
        }
        other => bail!(
            "{shown}: `chat_template` must be a string or a list of named templates, got {other}"
        ),
    }
}

/// `bos_token` etc. as strings: a plain string, or an `AddedToken` object's `content`.
fn special_tokens(config: &serde_json::Value) -> Vec<(String, String)> {
    SPECIAL_TOKENS
        .iter()
        .filter_map(|&key| {
            let v = config.get(key)?;
            let text = v
                .as_str()
                .or_else(|| v.get("content").and_then(|c| c.as_str()))?;
            Some((key.to_owned(), text.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(src: &str, messages: &[Message], opts: RenderOptions) -> Result<String> {
        ChatTemplate::from_source(src.into(), "test".into())?.render(messages, &opts)
    }

    /// Every `T.jinja` in `tests/data/chat` (and in `$QWGPU_CHAT_TEMPLATES_DIR`,
    /// for templates that are not committed, such as a release's) renders
    /// `conversation.json` to exactly HF's `T.thinking-{on,off,unset}.txt`.
    #[test]
    fn renders_byte_for_byte_like_hf_apply_chat_template() {
        let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../cli/tests/data/chat");
        let fixture =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/dense-bf16-text");
        let conversation: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(data.join("conversation.json")).expect("conversation"),
        )
        .expect("json");
        let messages: Vec<Message> = conversation
            .as_array()
            .expect("list")
            .iter()
            .map(|m| {
                Message::new(
                    m["role"].as_str().expect("role"),
                    m["content"].as_str().expect("content"),
                )
            })
            .collect();
        let config = read_json_if_present(&fixture.join("tokenizer_config.json"))
            .expect("read")
            .expect("tokenizer_config.json");
        let mut dirs = vec![data];
        dirs.extend(std::env::var_os("QWGPU_CHAT_TEMPLATES_DIR").map(Into::into));
        let mut checked = 0;
        for dir in dirs {
            for entry in std::fs::read_dir(&dir).expect("template dir") {
                let path = entry.expect("entry").path();
                if path.extension().is_none_or(|e| e != "jinja") {
                    continue;
                }
                let source = std::fs::read_to_string(&path).expect("template");
                let mut t =
                    ChatTemplate::from_source(source, path.display().to_string()).expect("parses");
                t.special_tokens = special_tokens(&config);
                for (name, enable_thinking) in
                    [("on", Some(true)), ("off", Some(false)), ("unset", None)]
                {
                    let stem = path.file_stem().expect("stem").to_string_lossy();
                    let expected_path = path.with_file_name(format!("{stem}.thinking-{name}.txt"));
                    let expected = std::fs::read_to_string(&expected_path).unwrap_or_else(|e| {
                        let shown = expected_path.display();
                        panic!("{shown}: {e}")
                    });
                    let got = t
                        .render(
                            &messages,
                            &RenderOptions {
                                add_generation_prompt: true,
                                enable_thinking,
                            },
                        )
                        .unwrap_or_else(|e| {
                            let shown = path.display();
                            panic!("{shown}: {e:#}")
                        });
                    let shown = path.display();
                    assert_eq!(got, expected, "{shown} thinking {name}");
                    checked += 1;
                }
            }
        }
        assert!(checked >= 3, "only {checked} renderings checked");
    }

    #[test]
    fn raise_exception_reaches_the_user_in_the_templates_words() {
        let src = "{% macro check(m) %}{% if m.role == 'robot' %}{{ raise_exception('Robots may not speak: ' ~ m.role) }}{% endif %}{% endmacro %}{% for m in messages %}{{ check(m)|trim }}{% endfor %}";
        let err = render(
            src,
            &[Message::new("robot", "hi")],
            RenderOptions::default(),
        )
        .expect_err("raises");
        let text = format!("{err:#}");
        assert!(
            text.contains(
                "the chat template refused the conversation: Robots may not speak: robot"
            ),
            "{text}"
        );
    }

    #[test]
    fn python_methods_and_variables_work() {
        let src = "{{ messages[0].content.strip().split(',')[1].upper() }}|{{ 'x'.startswith('x') }}|{{ enable_thinking is defined }}|{{ tools is none }}|{{ add_generation_prompt }}";
        let out = render(
            src,
            &[Message::new("user", " a,b ")],
            RenderOptions {
                add_generation_prompt: true,
                enable_thinking: None,
            },
        )
        .expect("renders");
        assert_eq!(
            out, "B|True|False|True|True",
            "Python spells booleans True/False"
        );
    }

    #[test]
    fn named_template_list_picks_default() {
        let list = serde_json::json!([
            {"name": "tool_use", "template": "T"},
            {"name": "default", "template": "D"}
        ]);
        assert_eq!(pick_template(&list, Path::new("x")).expect("default"), "D");
        let err = pick_template(
            &serde_json::json!([{"name": "tool_use", "template": "T"}]),
            Path::new("x"),
        )
        .expect_err("no default");
        assert!(err.to_string().contains("it has: tool_use"), "{err}");
    }

    #[test]
    fn syntax_errors_name_the_file() {
        let err = ChatTemplate::from_source("{% if %}".into(), "/m/chat_template.jinja".into())
            .err()
            .expect("syntax error");
        assert!(
            err.to_string().contains("/m/chat_template.jinja: parsing"),
            "{err}"
        );
    }

    #[test]
    fn a_malformed_or_unreadable_file_is_not_a_missing_template() {
        let d = tempfile::tempdir().expect("tempdir");
        match ChatTemplate::from_dir(d.path()) {
            Err(TemplateError::Missing { dir }) => assert_eq!(dir, d.path().display().to_string()),
            Err(e) => panic!("an empty folder: {e}"),
            Ok(_) => panic!("an empty folder has a template"),
        }
        let config = d.path().join("tokenizer_config.json");
        std::fs::write(&config, "{\"chat_template\": \"x\",").expect("write");
        match ChatTemplate::from_dir(d.path()) {
            Err(TemplateError::Json { path, .. }) => {
                assert_eq!(path, config.display().to_string())
            }
            Err(e) => panic!("malformed tokenizer_config.json: {e}"),
            Ok(_) => panic!("malformed tokenizer_config.json gave a template"),
        }
        // Even with a template elsewhere: the folder's files disagree with
        // what the user sees, so say it.
        std::fs::write(d.path().join("chat_template.jinja"), "{{ messages }}").expect("write");
        assert!(matches!(
            ChatTemplate::from_dir(d.path()),
            Err(TemplateError::Json { .. })
        ));
        std::fs::remove_file(&config).expect("rm");
        assert!(ChatTemplate::from_dir(d.path()).is_ok());
        // A dangling link named chat_template.jinja is an error, not "absent".
        std::fs::remove_file(d.path().join("chat_template.jinja")).expect("rm");
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(d.path().join("gone"), d.path().join("chat_template.jinja"))
                .expect("symlink");
            let err = ChatTemplate::from_dir(d.path())
                .err()
                .expect("dangling link");
            assert!(!matches!(err, TemplateError::Missing { .. }), "{err}");
        }
    }
}
