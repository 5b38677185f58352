//! The JavaScript API (wasm-bindgen): open a model from a URL or picked
//! files, render the chat template, generate with on-GPU sampling while
//! streaming text to a callback, cancel, and report tok/s.
//!
//! ```js
//! import init, { WebModel } from "./pkg/qwgpu_web.js";
//! await init();
//! const m = await WebModel.open_url("/model/", (done, total) => {});
//! const prompt = m.chat_prompt(JSON.stringify([{ role: "user", content: "Hi" }]));
//! const stats = await m.generate(prompt, 64, 0.7, 20, 0.95, 1, (text) => out.textContent += text);
//! ```

use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use js_sys::{Array, Function, Object, Reflect};
use qwgpu_kernels::{ContextOptions, GpuContext};
use qwgpu_model::gpu::GpuModel;
use qwgpu_ops::sampling::SamplingParams;
use wasm_bindgen::prelude::*;

use crate::chat_template::{ChatTemplate, Message, RenderOptions};
use crate::source::ModelSource;
use crate::{load, WebError};

fn js_err(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

/// A model on the page's GPU, its tokenizer and chat template.
#[wasm_bindgen]
pub struct WebModel {
    model: GpuModel,
    tokenizer: tokenizers::Tokenizer,
    template: Option<ChatTemplate>,
    /// Token ids that end an answer (`<|im_end|>`, `<|endoftext|>`).
    stops: Vec<u32>,
    cancelled: Rc<Cell<bool>>,
}

#[wasm_bindgen]
impl WebModel {
    /// Opens the HF-style folder at `url` (`config.json`, `tokenizer.json`,
    /// `tokenizer_config.json` / `chat_template.jinja`, safetensors shards
    /// and their index); `progress(done, total)` hears the weight bytes read.
    pub async fn open_url(url: String, progress: Function) -> Result<WebModel, JsError> {
        Self::open(ModelSource::Url(url), progress).await
    }

    /// Opens a model from `File`s a user picked (a folder's files).
    pub async fn open_files(files: Array, progress: Function) -> Result<WebModel, JsError> {
        let mut map = HashMap::new();
        for f in files.iter() {
            let f: web_sys::File = f
                .dyn_into()
                .map_err(|_| js_err("open_files takes File objects"))?;
            map.insert(f.name(), f);
        }
        Self::open(ModelSource::Files(map), progress).await
    }

    async fn open(src: ModelSource, progress: Function) -> Result<WebModel, JsError> {
        // The device first: no adapter is the likeliest failure, and cheap.
        let ctx = GpuContext::new_web(&ContextOptions::default())
            .await
            .map_err(js_err)?;
        let tokenizer_json = src.read("tokenizer.json").await.map_err(js_err)?;
        let tokenizer = tokenizers::Tokenizer::from_bytes(&tokenizer_json).map_err(|e| {
            js_err(WebError::Source {
                file: src.describe("tokenizer.json"),
                detail: e.to_string(),
            })
        })?;
        let template = template(&src).await.map_err(js_err)?;
        let report = |done: u64, total: u64| {
            let _ = progress.call2(
                &JsValue::NULL,
                &(done as f64).into(),
                &(total as f64).into(),
            );
        };
        let ctx = Arc::new(ctx);
        let model = load::load(
            &src,
            &ctx,
            qwgpu_model::engine::DEFAULT_MAX_CHUNK,
            load::MAX_PART_BYTES,
            &mut |d, t| report(d, t),
        )
        .await
        .map_err(js_err)?;
        let stops = ["<|im_end|>", "<|endoftext|>"]
            .iter()
            .filter_map(|t| tokenizer.token_to_id(t))
            .collect();
        Ok(WebModel {
            model,
            tokenizer,
            template,
            stops,
            cancelled: Rc::new(Cell::new(false)),
        })
    }

    /// The adapter, as the browser names it.
    pub fn adapter(&self) -> String {
        self.model.context().describe()
    }

    /// `text` as token ids.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, JsError> {
        Ok(self
            .tokenizer
            .encode(text, false)
            .map_err(js_err)?
            .get_ids()
            .to_vec())
    }

    /// Renders `messages_json` (`[{"role": "user", "content": "..."}, ...]`)
    /// with the model's chat template and a generation prompt.
    pub fn chat_prompt(&self, messages_json: &str) -> Result<String, JsError> {
        let t = self
            .template
            .as_ref()
            .ok_or_else(|| js_err("this model has no chat template"))?;
        let raw: Vec<HashMap<String, String>> =
            serde_json::from_str(messages_json).map_err(js_err)?;
        let messages: Vec<Message> = raw
            .iter()
            .map(|m| {
                Message::new(
                    m.get("role").map_or("user", String::as_str),
                    m.get("content").map_or("", String::as_str),
                )
            })
            .collect();
        let opts = RenderOptions {
            add_generation_prompt: true,
            ..Default::default()
        };
        t.render(&messages, &opts).map_err(js_err)
    }

    /// Stops a running [`WebModel::generate`] after its current step.
    pub fn cancel(&self) {
        self.cancelled.set(true);
    }

    /// Generates up to `max_tokens` after `prompt` (sampled on the GPU;
    /// `temperature` 0 is greedy), calling `on_text(piece)` as text arrives.
    /// Resolves to `{prompt_tokens, generated, prefill_tok_s, decode_tok_s,
    /// cancelled}`.
    #[allow(clippy::too_many_arguments)]
    pub async fn generate(
        &self,
        prompt: String,
        max_tokens: u32,
        temperature: f32,
        top_k: u32,
        top_p: f32,
        seed: u64,
        on_text: Function,
    ) -> Result<JsValue, JsError> {
        self.cancelled.set(false);
        let ids = self.encode(&prompt)?;
        if ids.is_empty() {
            return Err(js_err("the prompt has no tokens"));
        }
        let params = SamplingParams {
            temperature,
            top_k,
            top_p,
            ..SamplingParams::GREEDY
        };
        params.validate().map_err(js_err)?;
        let m = &self.model;
        let mut s = m.new_session().map_err(js_err)?;
        m.set_seed(&mut s, seed);
        let t0 = now_ms();
        let mut next = m
            .forward_sample_async(&mut s, &ids, &params)
            .await
            .map_err(js_err)?;
        let prefill_ms = now_ms() - t0;
        let mut out: Vec<u32> = Vec::new();
        let mut shown = 0usize;
        let t1 = now_ms();
        let mut decode_steps = 0u32;
        while (out.len() as u32) < max_tokens && !self.stops.contains(&next) {
            out.push(next);
            // Text so far, emitted as it grows (a token may end mid-character).
            let text = self.tokenizer.decode(&out, true).map_err(js_err)?;
            if text.len() > shown && text.is_char_boundary(shown) && !text.ends_with('\u{fffd}') {
                let _ = on_text.call1(&JsValue::NULL, &text[shown..].into());
                shown = text.len();
            }
            if self.cancelled.get() || out.len() as u32 == max_tokens {
                break;
            }
            next = m
                .forward_sample_async(&mut s, &[next], &params)
                .await
                .map_err(js_err)?;
            decode_steps += 1;
        }
        let decode_ms = now_ms() - t1;
        let stats = Object::new();
        let set = |k: &str, v: JsValue| Reflect::set(&stats, &k.into(), &v);
        let rate = |n: f64, ms: f64| if ms > 0.0 { n * 1000.0 / ms } else { 0.0 };
        set("prompt_tokens", (ids.len() as f64).into()).map_err(|_| js_err("stats"))?;
        set("generated", (out.len() as f64).into()).map_err(|_| js_err("stats"))?;
        set("prefill_tok_s", rate(ids.len() as f64, prefill_ms).into())
            .map_err(|_| js_err("stats"))?;
        set("decode_tok_s", rate(decode_steps as f64, decode_ms).into())
            .map_err(|_| js_err("stats"))?;
        set("cancelled", self.cancelled.get().into()).map_err(|_| js_err("stats"))?;
        Ok(stats.into())
    }
}

/// Milliseconds from the page's clock.
fn now_ms() -> f64 {
    js_sys::Date::now()
}

/// The folder's chat template (as native: `chat_template.jinja`, else
/// `tokenizer_config.json`'s `chat_template`), if any.
async fn template(src: &ModelSource) -> Result<Option<ChatTemplate>, WebError> {
    let fail = |e: crate::chat_template::TemplateError| WebError::Template(e.to_string());
    if src.has("chat_template.jinja").await {
        let text = src.read_text("chat_template.jinja").await?;
        return Ok(Some(
            ChatTemplate::from_source(text, "chat_template.jinja".into()).map_err(fail)?,
        ));
    }
    if !src.has("tokenizer_config.json").await {
        return Ok(None);
    }
    let text = src.read_text("tokenizer_config.json").await?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| WebError::Source {
        file: src.describe("tokenizer_config.json"),
        detail: e.to_string(),
    })?;
    match json.get("chat_template").and_then(|t| t.as_str()) {
        Some(t) => Ok(Some(
            ChatTemplate::from_source(t.to_string(), "tokenizer_config.json".into())
                .map_err(fail)?,
        )),
        None => Ok(None),
    }
}
