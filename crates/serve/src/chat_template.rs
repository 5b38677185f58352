//! Chat templates as Hugging Face releases ship them, rendered the way
//! transformers' `apply_chat_template` renders them: Jinja with
//! `trim_blocks` and `lstrip_blocks`, Python string and dict methods
//! (`startswith`, `split`, `rstrip`, `items`, ...), `tojson` spelled like
//! `json.dumps`, `raise_exception(msg)`, loop controls, the tokenizer's
//! special tokens as variables, and `add_generation_prompt` /
//! `enable_thinking` / `tools` like HF passes them. Messages carry what an
//! OpenAI-compatible server receives (see [`Message`]).
//!
//! Where the template comes from, first found wins (as in transformers):
//! `chat_template.jinja`, `tokenizer_config.json`'s `chat_template` (a string,
//! or a list of `{name, template}` of which `default` is used), then
//! `chat_template.json`'s `chat_template`.

use std::path::Path;

use minijinja::{Environment, Error, ErrorKind, Value};

use crate::ordered_json::Json;
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

/// One turn of a conversation, with the fields an OpenAI-compatible server
/// receives and passes to the template (as vLLM does, from the request's
/// JSON): templates read `reasoning_content`, iterate `tool_calls` and
/// render a list `content` part by part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    pub content: Content,
    /// An assistant turn's reasoning, given apart from its `content`.
    pub reasoning_content: Option<String>,
    /// The functions an assistant turn called.
    pub tool_calls: Vec<ToolCall>,
    /// A `tool` turn's answer to this call.
    pub tool_call_id: Option<String>,
    /// A `tool` turn's function name (or a participant's name).
    pub name: Option<String>,
}

/// A message's `content`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Text(String),
    /// Content parts as given (`{"type": "text", "text": ...}`,
    /// `{"type": "image_url", ...}`): the template renders each.
    Parts(Vec<Json>),
    /// `null` or absent (an assistant turn that only calls tools).
    None,
}

impl Content {
    /// The text of a `Text` content (`None` for parts or no content).
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Content::Text(t) => Some(t),
            _ => None,
        }
    }
}

/// One call of an assistant turn: `{"id", "type": "function", "function":
/// {"name", "arguments"}}`. The arguments are an object, as templates
/// iterate them with `|items` (a JSON-string `arguments`, as OpenAI sends
/// it, is parsed first, as transformers and vLLM do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    pub id: Option<String>,
    pub name: String,
    /// The arguments object's entries, in the order given.
    pub arguments: Vec<(String, Json)>,
}

impl Message {
    /// A turn with plain text content and nothing else.
    pub fn new(role: &str, content: &str) -> Self {
        Self {
            role: role.into(),
            content: Content::Text(content.into()),
            reasoning_content: None,
            tool_calls: Vec::new(),
            tool_call_id: None,
            name: None,
        }
    }

    /// The message as the template sees it: the dict transformers would be
    /// given, with only the fields that are set (`tool_call.function` and
    /// `message.reasoning_content is string` are tested for presence).
    /// `reads_parts`: whether the template renders a list `content` itself;
    /// when not, text-only parts are joined with newlines first and a null
    /// content is "", as vLLM does for such ("string" content format)
    /// templates.
    fn to_template(&self, reads_parts: bool) -> Value {
        let mut fields: Vec<(&str, Value)> = vec![("role", Value::from(self.role.as_str()))];
        let text_parts = |parts: &[Json]| -> Option<Vec<String>> {
            parts
                .iter()
                .map(
                    |p| match (p.get("type").and_then(Json::as_str), p.get("text")) {
                        (Some("text"), Some(Json::String(t))) => Some(t.clone()),
                        _ => None,
                    },
                )
                .collect()
        };
        fields.push((
            "content",
            match &self.content {
                Content::Text(t) => Value::from(t.as_str()),
                Content::Parts(parts) => match text_parts(parts) {
                    Some(texts) if !reads_parts => Value::from(texts.join("\n")),
                    _ => Value::from(parts.iter().map(Json::to_template).collect::<Vec<_>>()),
                },
                // A template that only prints `content` would print "None";
                // vLLM gives such templates "" (and a list one, an empty list).
                Content::None if !reads_parts => Value::from(""),
                Content::None => Value::from(()),
            },
        ));
        if let Some(r) = &self.reasoning_content {
            fields.push(("reasoning_content", Value::from(r.as_str())));
        }
        if !self.tool_calls.is_empty() {
            let calls: Vec<Value> = self.tool_calls.iter().map(ToolCall::to_template).collect();
            fields.push(("tool_calls", Value::from(calls)));
        }
        if let Some(id) = &self.tool_call_id {
            fields.push(("tool_call_id", Value::from(id.as_str())));
        }
        if let Some(name) = &self.name {
            fields.push(("name", Value::from(name.as_str())));
        }
        fields.into_iter().collect()
    }
}

impl ToolCall {
    fn to_template(&self) -> Value {
        let arguments: Value = self
            .arguments
            .iter()
            .map(|(k, v)| (k.as_str(), v.to_template()))
            .collect();
        let function: Value = [
            ("name", Value::from(self.name.as_str())),
            ("arguments", arguments),
        ]
        .into_iter()
        .collect();
        let mut fields: Vec<(&str, Value)> = Vec::new();
        if let Some(id) = &self.id {
            fields.push(("id", Value::from(id.as_str())));
        }
        fields.push(("type", Value::from("function")));
        fields.push(("function", function));
        fields.into_iter().collect()
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
    /// Whether the template renders a list `content` itself (see [`reads_parts`]).
    reads_parts: bool,
}

/// Whether a template handles a message `content` given as a list of parts
/// (it tests the content's type or loops over it), like vLLM's detection of
/// the "openai" content format; a template that only prints `content` gets
/// text parts joined into one string instead.
fn reads_parts(source: &str) -> bool {
    let compact: String = source.split_whitespace().collect::<Vec<_>>().join(" ");
    [
        "content is string",
        "content is not string",
        "content is iterable",
        "content is sequence",
        "content is mapping",
        "in message.content",
        "in message['content']",
        "in message[\"content\"]",
        "in content ",
        "in content%",
        "in content-%",
    ]
    .iter()
    .any(|pat| compact.contains(pat))
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
        env.add_filter("string", py_json::python_str);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<Value, Error> {
                Err(Error::new(ErrorKind::InvalidOperation, msg.clone()).with_source(Raised(msg)))
            },
        );
        let reads_parts = reads_parts(&source);
        env.add_template_owned(NAME, source).map_err(|e| {
            TemplateError::Invalid(format!("{origin}: parsing the chat template: {e:#}"))
        })?;
        Ok(Self {
            env,
            origin,
            special_tokens: Vec::new(),
            reads_parts,
        })
    }

    /// Where the template was read from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Renders `messages` like `apply_chat_template(messages, tokenize=False, ...)`.
    pub fn render(&self, messages: &[Message], opts: &RenderOptions) -> Result<String> {
        self.render_with_tools(messages, &[], opts)
    }

    /// Renders like `apply_chat_template(messages, tools=tools, tokenize=False, ...)`:
    /// `tools` are the request's function schemas as given (printed by the
    /// template with `tojson`); none is `tools=None`.
    pub fn render_with_tools(
        &self,
        messages: &[Message],
        tools: &[Json],
        opts: &RenderOptions,
    ) -> Result<String> {
        let msgs: Vec<Value> = messages
            .iter()
            .map(|m| m.to_template(self.reads_parts))
            .collect();
        let tools = if tools.is_empty() {
            Value::from(())
        } else {
            Value::from(tools.iter().map(Json::to_template).collect::<Vec<_>>())
        };
        let mut vars: Vec<(String, Value)> = vec![
            ("messages".into(), Value::from(msgs)),
            ("tools".into(), tools),
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

    /// Every `T.jinja` in the CLI's `tests/data/chat` renders
    /// `conversation.json` to exactly HF's `T.thinking-{on,off,unset}.txt`.
    /// (The released templates, in `$QWGPU_CHAT_TEMPLATES_DIR`, are checked by
    /// `tests/released_template.rs`.)
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
        let mut checked = 0;
        for entry in std::fs::read_dir(&data).expect("template dir") {
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

    /// A message with every field reaches the template as the dict
    /// transformers would get; text parts are joined (with newlines, as vLLM
    /// does) only for a template that cannot render a list `content`.
    #[test]
    fn messages_reach_the_template_with_every_field() {
        let parts = Content::Parts(vec![
            Json::parse(r#"{"type": "text", "text": "a"}"#).expect("json"),
            Json::parse(r#"{"type": "text", "text": "b"}"#).expect("json"),
        ]);
        let user = Message {
            content: parts,
            ..Message::new("user", "")
        };
        let assistant = Message {
            content: Content::None,
            reasoning_content: Some("why".into()),
            tool_calls: vec![ToolCall {
                id: Some("c1".into()),
                name: "f".into(),
                arguments: vec![
                    ("z".into(), Json::parse("[1, 2.5]").expect("json")),
                    ("a".into(), Json::Bool(true)),
                ],
            }],
            ..Message::new("assistant", "")
        };
        let tool = Message {
            tool_call_id: Some("c1".into()),
            name: Some("f".into()),
            ..Message::new("tool", "ok")
        };
        let msgs = [user, assistant, tool];
        let opts = RenderOptions::default();
        let plain = "{% for m in messages %}[{{ m.content }}]{% endfor %}";
        assert_eq!(render(plain, &msgs, opts).expect("renders"), "[a\nb][][ok]");
        let lists = "{% for m in messages %}{% if m.content is string %}{{ m.content }}{% elif m.content %}{% for p in m.content %}<{{ p.text }}>{% endfor %}{% endif %}|{% endfor %}{{ messages[1].content is none }}";
        assert_eq!(
            render(lists, &msgs, opts).expect("renders"),
            "<a><b>||ok|True"
        );
        // (This template does not read parts: a null content reaches it as "".)
        let fields = "{% set a = messages[1] %}{{ a.reasoning_content }} {{ a.content is none }} {% for c in a.tool_calls %}{{ c.id }} {{ c.type }} {{ c.function.name }} {{ c.function.arguments|tojson }}{% endfor %} {{ messages[2].tool_call_id }} {{ messages[2].name }} {{ messages[0].reasoning_content is defined }}";
        assert_eq!(
            render(fields, &msgs, opts).expect("renders"),
            r#"why False c1 function f {"z": [1, 2.5], "a": true} c1 f False"#
        );
        let tools = [Json::parse(r#"{"type": "function", "function": {"name": "f", "parameters": {}, "description": "d"}}"#).expect("json")];
        let t = ChatTemplate::from_source(
            "{{ tools|tojson }}|{{ tools is none }}".into(),
            "test".into(),
        )
        .expect("parses");
        assert_eq!(
            t.render_with_tools(&msgs, &tools, &opts).expect("renders"),
            r#"[{"type": "function", "function": {"name": "f", "parameters": {}, "description": "d"}}]|False"#
        );
        assert_eq!(t.render(&msgs, &opts).expect("renders"), "null|True");
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
