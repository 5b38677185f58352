//! The constraint at the library level: random logits sampled under the
//! mask (the sampler the engine uses, on the CPU) give replies that parse
//! and validate, checked by independent validators (`jsonschema`, and a
//! reader of Qwen3-Coder's XML written here).

use serde_json::{json, Value};
use tokenizers::Tokenizer;

use super::matcher::allows;
use super::*;
use crate::ordered_json::Json;
use qwgpu_model::sampling::{SamplingParams, SplitMix64};
use qwgpu_model::Sampler;

const EOS: u32 = 2;

fn tokenizer() -> Tokenizer {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/dense-bf16-text/tokenizer.json");
    Tokenizer::from_file(&path).expect("the fixture's tokenizer")
}

/// The bundled model's vocabulary (512 ids: 3 specials, 256 bytes, merges).
fn grammars() -> (Grammars, Tokenizer) {
    let tok = tokenizer();
    let g = Grammars::new(&tok, 512, &[EOS]).expect("grammar engine");
    (g, tok)
}

/// A reply sampled from random logits under the constraint: its bytes,
/// and whether it ended with end-of-sequence (else `max_steps` ran out).
fn random_reply(
    g: &Grammars,
    c: &mut Constraint,
    seed: u64,
    max_steps: usize,
    mut forced: impl FnMut(usize, &[u32]) -> Option<u32>,
) -> (Vec<u8>, bool) {
    let words = vocab_words(g);
    let mut rng = SplitMix64::new(seed);
    let params = SamplingParams {
        temperature: 1.0,
        ..SamplingParams::GREEDY
    };
    let mut sampler = Sampler::new(params, seed).expect("sampler");
    let mut out = Vec::new();
    for step in 0..max_steps {
        let mask = c.mask().expect("mask");
        let token = match forced(step, &mask) {
            Some(t) => {
                assert!(allows(&mask, t), "step {step}: forced token {t} refused");
                t
            }
            None => {
                let logits: Vec<f32> = (0..g.vocab_size())
                    .map(|t| {
                        let l = (rng.next_f64() * 6.0) as f32;
                        if allows(&mask, t as u32) {
                            l
                        } else {
                            f32::NEG_INFINITY
                        }
                    })
                    .collect();
                sampler.sample(&logits).expect("a token") as u32
            }
        };
        assert!(allows(&mask, token), "sampled a refused token");
        if token == EOS {
            assert!(c.is_accepting() || c.is_stopped(), "EOS before the end");
            return (out, true);
        }
        out.extend_from_slice(words.token(token));
        c.commit(token).expect("commit");
    }
    (out, false)
}

fn vocab_words(g: &Grammars) -> toktrie::TokEnv {
    g.factory.tok_env().clone()
}

trait Words {
    fn token(&self, t: u32) -> &[u8];
}

impl Words for toktrie::TokEnv {
    fn token(&self, t: u32) -> &[u8] {
        self.tok_trie().token(t)
    }
}

fn json_spec(schema: &Value) -> Spec {
    Spec::Json {
        schema: schema.clone(),
        strict: true,
    }
}

/// Schemas with nested objects, arrays, enums, required fields, string
/// patterns and bounds.
fn schemas() -> Vec<Value> {
    vec![
        json!({"type": "object"}),
        json!({
            "type": "object",
            "properties": {
                "name": {"type": "string", "maxLength": 12},
                "age": {"type": "integer", "minimum": 0, "maximum": 150},
                "tags": {"type": "array", "items": {"type": "string", "pattern": "^[a-z]{1,6}$"}, "maxItems": 4},
                "kind": {"enum": ["cat", "dog", 3, null]},
                "address": {
                    "type": "object",
                    "properties": {
                        "zip": {"type": "string", "pattern": "^[0-9]{5}$"},
                        "geo": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2}
                    },
                    "required": ["zip", "geo"],
                    "additionalProperties": false
                }
            },
            "required": ["name", "age", "address"],
            "additionalProperties": false
        }),
        json!({
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"id": {"type": "integer"}, "ok": {"type": "boolean"},
                               "sub": {"type": "array", "items": {"enum": ["x", "y"]}, "maxItems": 3}},
                "required": ["id", "ok"],
                "additionalProperties": false
            },
            "minItems": 1,
            "maxItems": 3
        }),
        // An unbounded string: long replies under random logits, still valid.
        json!({"type": "object", "properties": {"s": {"type": "string"}}, "required": ["s"],
               "additionalProperties": false}),
    ]
}

/// `text` with every JSON exponent beyond 200 written as 200. JSON's grammar
/// (which the constraint follows) allows any exponent (`9e7247`); serde_json
/// refuses a number beyond f64's range. Strings are copied as they are.
fn small_exponents(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut in_str, mut escaped, mut prev_digit) = (false, false, false);
    let mut exp: Option<String> = None;
    let flush = |out: &mut String, exp: &mut Option<String>| {
        if let Some(d) = exp.take() {
            let digits = d.trim_start_matches(['+', '-']).trim_start_matches('0');
            let sign = &d[..d.len() - d.trim_start_matches(['+', '-']).len()];
            if digits.len() > 3 || digits.parse::<u32>().unwrap_or(0) > 200 {
                out.push_str(sign);
                out.push_str("200");
            } else {
                out.push_str(&d);
            }
        }
    };
    for c in text.chars() {
        if in_str {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_str = false;
            }
            continue;
        }
        if let Some(d) = exp.as_mut() {
            if c.is_ascii_digit() || (d.is_empty() && (c == '+' || c == '-')) {
                d.push(c);
                continue;
            }
            flush(&mut out, &mut exp);
        }
        out.push(c);
        if (c == 'e' || c == 'E') && prev_digit {
            exp = Some(String::new());
        }
        in_str = c == '"';
        prev_digit = c.is_ascii_digit() || c == '.';
    }
    flush(&mut out, &mut exp);
    out
}

#[test]
fn small_exponents_caps_only_exponents() {
    assert_eq!(
        small_exponents(r#"{"e9999": 1e9999, "a": [2E-0400, 1.5e+7, 3e0200, 4e12]}"#),
        r#"{"e9999": 1e200, "a": [2E-200, 1.5e+7, 3e0200, 4e12]}"#
    );
}

fn validate(schema: &Value, text: &str) {
    let value: Value = serde_json::from_str(&small_exponents(text))
        .unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"));
    let validator = jsonschema::validator_for(schema).expect("a valid schema");
    let errors: Vec<String> = validator
        .iter_errors(&value)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{text} breaks {schema}: {errors:?}");
}

#[test]
fn random_logits_under_a_json_schema_give_valid_json() {
    let (g, _) = grammars();
    for (k, schema) in schemas().iter().enumerate() {
        for seed in 0..4u64 {
            let mut c = g.compile(&json_spec(schema), false).expect("compiles");
            let (bytes, ended) =
                random_reply(&g, &mut c, seed * 31 + k as u64, 30_000, |_, _| None);
            let text = String::from_utf8(bytes).expect("UTF-8");
            assert!(
                ended,
                "schema {k} seed {seed}: no end after 30000 tokens: {text:?}"
            );
            validate(schema, &text);
        }
    }
}

#[test]
fn json_object_gives_an_object() {
    let (g, _) = grammars();
    let spec = request::parse(
        &Json::from(&json!({"response_format": {"type": "json_object"}})),
        false,
    )
    .expect("parses")
    .expect("a spec");
    for seed in 0..4 {
        let mut c = g.compile(&spec, false).expect("compiles");
        let (bytes, ended) = random_reply(&g, &mut c, seed, 30_000, |_, _| None);
        assert!(ended);
        let text = String::from_utf8(bytes).expect("UTF-8");
        let v: Value = serde_json::from_str(&small_exponents(&text)).expect("JSON");
        assert!(v.is_object(), "{v}");
    }
}

#[test]
fn the_first_token_is_constrained_and_eos_only_at_the_end() {
    let (g, tok) = grammars();
    let schema = json!({"type": "object", "properties": {"a": {"enum": [1]}}, "required": ["a"],
                        "additionalProperties": false});
    let mut c = g.compile(&json_spec(&schema), false).expect("compiles");
    let id = |s: &str| {
        let ids = tok.encode(s, false).expect("encode").get_ids().to_vec();
        assert_eq!(ids.len(), 1, "{s:?} is one token");
        ids[0]
    };
    let mask = c.mask().expect("mask");
    assert!(allows(&mask, id("{")));
    assert!(!allows(&mask, id("a")) && !allows(&mask, id(" ")) && !allows(&mask, EOS));
    for t in tok.encode("{\"a\": 1}", false).expect("encode").get_ids() {
        c.commit(*t).expect("commit");
    }
    let mask = c.mask().expect("mask");
    assert!(allows(&mask, EOS));
    assert_eq!(
        mask.iter().map(|w| w.count_ones()).sum::<u32>(),
        1,
        "only EOS"
    );
}

#[test]
fn with_thinking_open_the_reasoning_is_free_and_the_json_follows() {
    let (g, tok) = grammars();
    let schema = &schemas()[1];
    let close: Vec<u32> = tok
        .encode("\n</think>\n\n", false)
        .expect("encode")
        .get_ids()
        .to_vec();
    for seed in 0..3u64 {
        let mut c = g.compile(&json_spec(schema), true).expect("compiles");
        // Free text: every token that is text (valid UTF-8) is allowed.
        let mask = c.mask().expect("mask");
        let env = vocab_words(&g);
        let text: Vec<u32> = (3..512u32)
            .filter(|&t| std::str::from_utf8(env.token(t)).is_ok())
            .collect();
        assert!(text.len() > 300);
        for t in text {
            assert!(allows(&mask, t), "token {t} refused while thinking");
        }
        // Some random reasoning, then `</think>` once the text allows it
        // (not inside a multi-byte character).
        let think_len = 5 + seed as usize * 7;
        let mut from = None;
        let (bytes, ended) = random_reply(&g, &mut c, seed, 30_000, |step, mask| {
            if from.is_none() && step >= think_len && allows(mask, close[0]) {
                from = Some(step);
            }
            let i = step - from?;
            close.get(i).copied()
        });
        assert!(ended);
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let (_, json) = text.split_once("</think>").expect("the reasoning ends");
        validate(schema, json.trim_start_matches('\n'));
    }
}

#[test]
fn unsupported_schemas_are_grammar_errors_naming_the_field() {
    let (g, _) = grammars();
    for schema in [
        json!({"type": "object", "properties": {"a": {"type": "strin"}}}),
        json!({"$ref": "#/$defs/missing"}),
        json!({"type": "integer", "minimum": 5, "maximum": 1}),
    ] {
        match g.compile(&json_spec(&schema), false) {
            Err(ConstrainError::Grammar { param, detail }) => {
                assert_eq!(param, "response_format.json_schema.schema");
                assert!(!detail.is_empty());
            }
            other => panic!("{schema}: {other:?}"),
        }
    }
}

#[test]
fn thinking_open_reads_the_prompt_end() {
    assert!(thinking_open("<|im_start|>assistant\n<think>\n"));
    assert!(!thinking_open(
        "<|im_start|>assistant\n<think>\n\n</think>\n\n"
    ));
    assert!(!thinking_open("<|im_start|>assistant\n"));
    assert!(thinking_open("<think>a</think> b <think>\n"));
}

#[test]
fn token_bytes_match_the_tokenizers_decoding() {
    let tok = tokenizer();
    let words = vocab::token_bytes(&tok, 520).expect("bytes");
    assert_eq!(words.len(), 520);
    let mut checked = 0;
    for id in 3..512u32 {
        let text = tok.decode(&[id], false).expect("decode");
        if !text.contains('\u{FFFD}') {
            assert_eq!(words[id as usize], text.as_bytes(), "token {id}");
            checked += 1;
        }
    }
    assert!(checked > 300, "{checked} tokens checked");
    // Specials and ids past the tokenizer are never text.
    for id in [0usize, 1, 2, 512, 519] {
        assert_eq!(
            words[id][0],
            toktrie::TokTrie::SPECIAL_TOKEN_MARKER,
            "id {id}"
        );
    }
}

/// One parsed call of Qwen3-Coder's XML: name and (parameter, value) pairs.
type Call = (String, Vec<(String, String)>);

/// Reads `<tool_call>\n<function=N>\n(<parameter=P>\nV\n</parameter>\n)*
/// </function>\n</tool_call>` calls separated by `\n`; `None` if the text
/// is anything else.
fn read_calls(text: &str) -> Option<Vec<Call>> {
    let mut calls = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.strip_prefix("<tool_call>\n<function=")?;
        let (name, r) = rest.split_once(">\n")?;
        rest = r;
        let mut params = Vec::new();
        while let Some(r) = rest.strip_prefix("<parameter=") {
            let (p, r) = r.split_once(">\n")?;
            let (v, r) = r.split_once("\n</parameter>\n")?;
            params.push((p.to_string(), v.to_string()));
            rest = r;
        }
        rest = rest.strip_prefix("</function>\n</tool_call>")?;
        calls.push((name.to_string(), params));
        if rest.is_empty() {
            return Some(calls);
        }
        rest = rest.strip_prefix('\n')?;
    }
}

fn tools_json() -> Value {
    json!([
        {"type": "function", "function": {"name": "get_weather", "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 20},
                "days": {"type": "integer", "minimum": 1, "maximum": 14},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "detailed": {"type": "boolean"},
                "note": {"type": "string", "maxLength": 40}
            },
            "required": ["city", "days"]
        }}},
        {"type": "function", "function": {"name": "plot", "parameters": {
            "type": "object",
            "properties": {
                "points": {"type": "array", "items": {"type": "number"}, "maxItems": 3},
                "style": {"type": "object", "properties": {"color": {"enum": ["red", "blue"]}},
                          "required": ["color"], "additionalProperties": false},
                "scale": {"type": "number"}
            },
            "required": ["points", "style"]
        }}},
        {"type": "function", "function": {"name": "now"}}
    ])
}

/// Checks a call against its tool's schema, value by declared type.
fn check_call(tools: &Value, call: &Call) {
    let (name, params) = call;
    let tool = tools
        .as_array()
        .and_then(|a| a.iter().find(|t| t["function"]["name"] == name.as_str()))
        .unwrap_or_else(|| panic!("unknown function {name}"));
    let schema = &tool["function"]["parameters"];
    if schema.is_null() {
        assert!(params.is_empty(), "{name} takes no parameters: {params:?}");
        return;
    }
    let empty = serde_json::Map::new();
    let props = schema["properties"].as_object().unwrap_or(&empty);
    for r in schema["required"].as_array().into_iter().flatten() {
        let r = r.as_str().expect("name");
        assert!(params.iter().any(|(p, _)| p == r), "{name}: {r} missing");
    }
    let mut args = serde_json::Map::new();
    for (p, v) in params {
        let ps = props
            .get(p)
            .unwrap_or_else(|| panic!("{name}: unknown {p}"));
        // A string (alone or nullable) is the text; anything else JSON.
        let is_string = match &ps["type"] {
            Value::String(t) => t == "string",
            Value::Array(ts) => ts.iter().any(|t| t == "string"),
            _ => false,
        };
        let value = if is_string {
            Value::String(v.clone())
        } else {
            serde_json::from_str(&small_exponents(v))
                .unwrap_or_else(|e| panic!("{name}.{p} = {v:?}: {e}"))
        };
        args.insert(p.clone(), value);
    }
    for v in args.values() {
        if let Value::String(s) = v {
            assert!(
                !s.contains("</parameter>") && !s.contains("</function>"),
                "{s:?}"
            );
        }
    }
    validate(schema, &Value::Object(args).to_string());
}

fn tool_spec(body: Value) -> Spec {
    request::parse(&Json::from(&body), true)
        .expect("parses")
        .expect("a spec")
}

#[test]
fn random_logits_under_tool_choice_give_valid_calls() {
    let (g, _) = grammars();
    let tools = tools_json();
    let cases = [
        (json!("required"), true),
        (
            json!({"type": "function", "function": {"name": "plot"}}),
            false,
        ),
        (
            json!({"type": "function", "function": {"name": "now"}}),
            false,
        ),
    ];
    for (choice, parallel) in cases {
        let spec = tool_spec(json!({"tools": tools, "tool_choice": choice}));
        let mut counts = Vec::new();
        for seed in 0..6u64 {
            let mut c = g.compile(&spec, false).expect("compiles");
            let (bytes, ended) = random_reply(&g, &mut c, seed, 30_000, |_, _| None);
            let text = String::from_utf8(bytes).expect("UTF-8");
            assert!(ended, "{choice}: no end: {text:?}");
            let calls = read_calls(&text).unwrap_or_else(|| panic!("not calls: {text:?}"));
            if let Some(name) = choice.pointer("/function/name") {
                assert!(calls
                    .iter()
                    .all(|c| c.0 == name.as_str().unwrap_or_default()));
            }
            for call in &calls {
                check_call(&tools, call);
            }
            counts.push(calls.len());
        }
        if !parallel {
            assert!(counts.iter().all(|&n| n == 1), "{counts:?}");
        }
    }
}

#[test]
fn the_call_grammar_takes_values_with_tags_like_text_but_not_its_own() {
    let (g, tok) = grammars();
    let tools = json!([{"type": "function", "function": {"name": "say", "parameters": {
        "type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}}}]);
    let spec = tool_spec(json!({"tools": tools, "tool_choice": "required"}));
    let feed = |text: &str| feed(&mut g.compile(&spec, false).expect("compiles"), &tok, text);
    let ok = "<tool_call>\n<function=say>\n<parameter=text>\na < b && <div>\nline 2\n</parameter>\n</function>\n</tool_call>";
    feed(ok).expect("a multi-line value with < and & is text");
    assert!(feed("<tool_call>\n<function=say>\n<parameter=text>\nx</parameter>").is_err());
    assert!(feed("<tool_call>\n<function=other>").is_err());
    assert!(
        feed("<tool_call>\n<function=say>\n</function>").is_err(),
        "required"
    );
}

/// Feeds `text`'s tokens to `c`, each checked against the mask first.
fn feed(c: &mut Constraint, tok: &Tokenizer, text: &str) -> Result<(), ConstrainError> {
    for t in tok.encode(text, false).expect("encode").get_ids() {
        let mask = c.mask()?;
        if !allows(&mask, *t) {
            return Err(ConstrainError::Matcher {
                detail: format!("token {t} refused"),
            });
        }
        c.commit(*t)?;
    }
    Ok(())
}

/// A fork (what each extra choice of `n` > 1 gets) starts where its
/// original stands and then goes on alone: one completes a call of one tool
/// while the other, still at the start, takes a call of another, and
/// neither's tokens reach the other.
#[test]
fn a_forked_constraint_follows_the_grammar_on_its_own() {
    let (g, tok) = grammars();
    let spec = tool_spec(json!({"tools": tools_json(), "tool_choice": "required",
        "parallel_tool_calls": false}));
    let mut a = g.compile(&spec, false).expect("compiles");
    feed(&mut a, &tok, "<tool_call>\n<function=").expect("a call opens");
    let mut b = a.fork();
    feed(&mut a, &tok, "now>\n</function>\n</tool_call>").expect("a: a whole call");
    assert!(a.is_accepting() || a.is_stopped());
    assert!(!b.is_accepting(), "b took a's tokens");
    feed(
        &mut b,
        &tok,
        "get_weather>\n<parameter=city>\nParis\n</parameter>\n",
    )
    .expect("b: another tool");
    assert!(
        feed(&mut b.fork(), &tok, "</function>").is_err(),
        "days is required"
    );
    feed(
        &mut b,
        &tok,
        "<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>",
    )
    .expect("b: its call ends");
    assert!(b.is_accepting() || b.is_stopped());
    let mut fresh = g.compile(&spec, false).expect("compiles");
    assert!(
        feed(&mut fresh, &tok, "now>").is_err(),
        "a fresh reply starts with the tag"
    );
}

/// String parameters with a `pattern` (anchored, matched anywhere, top-level
/// alternatives, `\d`), alone, with length bounds and nullable, and a
/// nullable integer with bounds: random logits under the
/// call grammar give values the `jsonschema` crate finds matching (its
/// patterns are ECMA-262 `search`es, as the schema means them).
#[test]
fn random_logits_under_string_patterns_give_matching_values() {
    let (g, _) = grammars();
    let tools = json!([{"type": "function", "function": {"name": "book", "parameters": {
        "type": "object",
        "properties": {
            "code": {"type": "string", "pattern": "^[A-Z]{2}-\\d{3}$"},
            "tag": {"type": "string", "pattern": "x[0-9]y", "maxLength": 10},
            "side": {"type": "string", "pattern": "^left|right$", "maxLength": 8},
            "word": {"type": "string", "pattern": "^[a-z]+$", "minLength": 3, "maxLength": 6},
            "gate": {"type": ["string", "null"], "pattern": "^G[0-9]$"},
            "row": {"type": ["integer", "null"], "minimum": 1, "maximum": 40}
        },
        "required": ["code", "tag", "side", "word", "gate", "row"]
    }}}]);
    let spec = tool_spec(json!({"tools": tools, "tool_choice": "required",
        "parallel_tool_calls": false}));
    for seed in 0..8u64 {
        let mut c = g.compile(&spec, false).expect("compiles");
        let (bytes, ended) = random_reply(&g, &mut c, seed, 30_000, |_, _| None);
        let text = String::from_utf8(bytes).expect("UTF-8");
        assert!(ended, "no end: {text:?}");
        let calls = read_calls(&text).unwrap_or_else(|| panic!("not calls: {text:?}"));
        assert_eq!(calls.len(), 1, "{text:?}");
        check_call(&tools, &calls[0]);
    }
}

#[test]
fn a_pattern_the_grammar_engine_refuses_is_an_error_naming_tools() {
    let (g, _) = grammars();
    for pattern in ["[a-", "a(?=b)"] {
        let tools = json!([{"type": "function", "function": {"name": "f", "parameters": {
            "type": "object", "properties": {"s": {"type": "string", "pattern": pattern}},
            "required": ["s"]}}}]);
        let spec = tool_spec(json!({"tools": tools, "tool_choice": "required"}));
        match g.compile(&spec, false) {
            Err(ConstrainError::Grammar { param, .. }) => assert_eq!(param, "tools"),
            other => panic!("{pattern}: {other:?}"),
        }
    }
}

/// A byte-level vocabulary of `n` ids shaped like a large BPE one: the 256
/// bytes, then words with and without a leading space, capitalised words,
/// digit runs, JSON / code punctuation, indentation and CJK characters,
/// then specials (the last is end-of-sequence).
fn synthetic_vocab(n: usize, specials: usize) -> toktrie::TokEnv {
    let mut rng = SplitMix64::new(7);
    let mut pick = |k: usize| (rng.next_u64() % k as u64) as usize;
    let mut seen = std::collections::HashSet::new();
    let mut words: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
    let letters = b"etaoinshrdlcumwfgypbvkjxqz";
    let punct = [
        "{\"", "\":", "\",", "\": \"", "\"}", "},", "[{", "]}", "();", "->", "::", "</", "/>",
        "=\"", "\n", "\n\n", "  ", "    ", "\t",
    ];
    let cjk = "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年";
    while words.len() < n - specials {
        let w: Vec<u8> = match pick(10) {
            0..=5 => {
                let len = 1 + pick(9);
                let mut w: Vec<u8> = (0..len)
                    .map(|_| letters[pick(letters.len()).min(pick(letters.len()))])
                    .collect();
                if pick(3) > 0 {
                    w.insert(0, b' ');
                }
                if pick(6) == 0 {
                    let i = usize::from(w[0] == b' ');
                    w[i] = w[i].to_ascii_uppercase();
                }
                w
            }
            6 => (0..1 + pick(3)).map(|_| b'0' + pick(10) as u8).collect(),
            7 => {
                let mut w = punct[pick(punct.len())].as_bytes().to_vec();
                w.extend_from_slice(punct[pick(punct.len())].as_bytes());
                w
            }
            8 => " ".repeat(1 + pick(16)).into_bytes(),
            _ => {
                let chars: Vec<char> = cjk.chars().collect();
                (0..1 + pick(3))
                    .map(|_| chars[pick(chars.len())])
                    .collect::<String>()
                    .into_bytes()
            }
        };
        if seen.insert(w.clone()) {
            words.push(w);
        }
    }
    for i in 0..specials {
        let mut w = vec![toktrie::TokTrie::SPECIAL_TOKEN_MARKER];
        w.extend_from_slice(format!("<|special_{i}|>").as_bytes());
        words.push(w);
    }
    let info = toktrie::TokRxInfo::new(n as u32, n as u32 - 1);
    std::sync::Arc::new(toktrie::ApproximateTokEnv::new(toktrie::TokTrie::from(
        &info, &words,
    )))
}

/// Host time of one step's mask over Qwen3.5's 248,320-id vocabulary (a
/// synthetic one of that size), for a JSON schema, a tool call and the
/// free reasoning before `</think>`. Run it on the machine that serves:
/// `cargo test --release -p qwgpu-serve --lib constrain::tests::mask_cost -- --ignored --nocapture`.
#[test]
#[ignore = "a benchmark: prints mask times"]
fn mask_cost_on_a_248k_vocabulary() {
    let t0 = std::time::Instant::now();
    let g = Grammars::from_env(synthetic_vocab(248_320, 256)).expect("engine");
    println!(
        "engine over 248,320 ids: {:.3} s",
        t0.elapsed().as_secs_f64()
    );
    let tools = tools_json();
    let cases = [
        ("json_schema", json_spec(&schemas()[1]), false),
        (
            "tool_call",
            tool_spec(json!({"tools": tools, "tool_choice": "required"})),
            false,
        ),
        ("thinking", json_spec(&schemas()[1]), true),
    ];
    for (name, spec, thinking) in cases {
        let t0 = std::time::Instant::now();
        let mut c = g.compile(&spec, thinking).expect("compiles");
        let compile_ms = t0.elapsed().as_secs_f64() * 1e3;
        // What `n: 16` costs the engine thread: 15 forks at the reply's start.
        let t0 = std::time::Instant::now();
        let forks: Vec<Constraint> = (0..15).map(|_| c.fork()).collect();
        let fork_us = t0.elapsed().as_secs_f64() * 1e6 / forks.len() as f64;
        drop(forks);
        let mut rng = SplitMix64::new(1);
        let mut times = Vec::new();
        for _ in 0..400 {
            let t = std::time::Instant::now();
            let mask = c.mask().expect("mask");
            times.push(t.elapsed().as_secs_f64() * 1e6);
            let allowed: Vec<u32> = (0..g.vocab_size() as u32)
                .filter(|&t| allows(&mask, t) && t != g.vocab_size() as u32 - 1)
                .collect();
            let Some(&tok) = allowed.get((rng.next_u64() % allowed.len().max(1) as u64) as usize)
            else {
                break;
            };
            c.commit(tok).expect("commit");
        }
        times.sort_by(f64::total_cmp);
        let n = times.len();
        let mean = times.iter().sum::<f64>() / n as f64;
        let (p50, p99, max) = (times[n / 2], times[n * 99 / 100], times[n - 1]);
        println!(
            "{name}: compile {compile_ms:.1} ms, fork {fork_us:.0} us; mask over {n} steps: mean {mean:.0} us, p50 {p50:.0} us, p99 {p99:.0} us, max {max:.0} us"
        );
    }
}
