//! Helpers of the browser tests (each test file is a binary of its own).

// Each test binary uses part of this module.
#![allow(dead_code)]

/// Resolves after `ms` milliseconds (the page's timer). The browser reports a
/// pipeline's errors as events, after the readback may have resolved: a test
/// lets them land before asking the context for errors.
pub async fn sleep_ms(ms: i32) {
    let p = js_sys::Promise::new(&mut |resolve, _| {
        let set_timeout =
            js_sys::Reflect::get(&js_sys::global(), &"setTimeout".into()).expect("setTimeout");
        let f: js_sys::Function = set_timeout.into();
        f.call2(&wasm_bindgen::JsValue::NULL, &resolve, &ms.into())
            .expect("setTimeout call");
    });
    wasm_bindgen_futures::JsFuture::from(p)
        .await
        .expect("timer");
}

/// Test output the runner shows (stdout is the browser console there).
pub fn log(line: &str) {
    wasm_bindgen_test::console_log!("{line}");
}
