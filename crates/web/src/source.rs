//! Where a page reads a model's files from: a HF-style folder over HTTP
//! (`fetch`, with `Range` requests for parts of a file) or the `File`
//! objects a user picked (`Blob.slice`).

use std::collections::HashMap;

use js_sys::{Function, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use crate::WebError;

/// A model folder's files.
pub enum ModelSource {
    /// A folder URL (ending in `/` or not).
    Url(String),
    /// Picked files by their name (the folder's relative paths are dropped).
    Files(HashMap<String, web_sys::File>),
}

fn js_detail(v: &JsValue) -> String {
    v.as_string()
        .or_else(|| {
            v.dyn_ref::<js_sys::Error>()
                .map(|e| String::from(e.message()))
        })
        .unwrap_or_else(|| format!("{v:?}"))
}

impl ModelSource {
    /// Where `file` is, in words.
    pub fn describe(&self, file: &str) -> String {
        match self {
            ModelSource::Url(base) => format!("{base}/{file}", base = base.trim_end_matches('/')),
            ModelSource::Files(_) => format!("the picked file {file}"),
        }
    }

    /// Whether the folder has `file` (a `HEAD` request over HTTP).
    pub async fn has(&self, file: &str) -> bool {
        match self {
            ModelSource::Files(f) => f.contains_key(file),
            ModelSource::Url(_) => self.fetch(file, None, "HEAD").await.is_ok(),
        }
    }

    /// The whole of `file`.
    pub async fn read(&self, file: &str) -> Result<Vec<u8>, WebError> {
        self.read_range(file, None).await
    }

    /// `file` as UTF-8 text.
    pub async fn read_text(&self, file: &str) -> Result<String, WebError> {
        let bytes = self.read(file).await?;
        String::from_utf8(bytes).map_err(|_| WebError::Source {
            file: self.describe(file),
            detail: "not UTF-8 text".into(),
        })
    }

    /// Bytes `start..end` of `file` (all of it for `None`).
    pub async fn read_range(
        &self,
        file: &str,
        range: Option<(u64, u64)>,
    ) -> Result<Vec<u8>, WebError> {
        let fail = |detail: String| WebError::Source {
            file: self.describe(file),
            detail,
        };
        let buffer = match self {
            ModelSource::Files(files) => {
                let f = files
                    .get(file)
                    .ok_or_else(|| fail("not among the picked files".into()))?;
                let blob: &web_sys::Blob = f;
                let blob = match range {
                    Some((a, b)) => blob
                        .slice_with_f64_and_f64(a as f64, b as f64)
                        .map_err(|e| fail(js_detail(&e)))?,
                    None => blob.clone(),
                };
                JsFuture::from(blob.array_buffer())
                    .await
                    .map_err(|e| fail(js_detail(&e)))?
            }
            ModelSource::Url(_) => {
                let resp = self.fetch(file, range, "GET").await?;
                let promise = resp.array_buffer().map_err(|e| fail(js_detail(&e)))?;
                JsFuture::from(promise)
                    .await
                    .map_err(|e| fail(js_detail(&e)))?
            }
        };
        let bytes = Uint8Array::new(&buffer).to_vec();
        if let Some((a, b)) = range {
            if bytes.len() as u64 != b - a {
                return Err(fail(format!(
                    "asked for bytes {a}..{b}, got {got} (a server that ignores Range requests?)",
                    got = bytes.len()
                )));
            }
        }
        Ok(bytes)
    }

    /// One `fetch` of `file` (a successful response or a typed error).
    async fn fetch(
        &self,
        file: &str,
        range: Option<(u64, u64)>,
        method: &str,
    ) -> Result<web_sys::Response, WebError> {
        let url = self.describe(file);
        let fail = |detail: String| WebError::Source {
            file: url.clone(),
            detail,
        };
        let init = Object::new();
        let set = |o: &Object, k: &str, v: &JsValue| {
            Reflect::set(o, &k.into(), v).map_err(|e| fail(js_detail(&e)))
        };
        set(&init, "method", &method.into())?;
        if let Some((a, b)) = range {
            let headers = Object::new();
            set(
                &headers,
                "Range",
                &format!("bytes={a}-{last}", last = b.saturating_sub(1)).into(),
            )?;
            set(&init, "headers", &headers)?;
        }
        let fetch: Function = Reflect::get(&js_sys::global(), &"fetch".into())
            .ok()
            .and_then(|f| f.dyn_into().ok())
            .ok_or_else(|| fail("this page has no fetch()".into()))?;
        let promise: Promise = fetch
            .call2(&JsValue::NULL, &url.clone().into(), &init)
            .map_err(|e| fail(js_detail(&e)))?
            .dyn_into()
            .map_err(|_| fail("fetch() returned no promise".into()))?;
        let resp: web_sys::Response = JsFuture::from(promise)
            .await
            .map_err(|e| fail(js_detail(&e)))?
            .dyn_into()
            .map_err(|_| fail("fetch() gave no Response".into()))?;
        if !resp.ok() {
            return Err(fail(format!(
                "HTTP {status} {text}",
                status = resp.status(),
                text = resp.status_text()
            )));
        }
        Ok(resp)
    }
}
