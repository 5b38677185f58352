//! The demo page in headless Chromium through chromedriver (WebDriver over
//! HTTP): the page opens the bundled model from the local server, one chat
//! turn is sent, and the answer and tok/s are read back from the DOM.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

/// A free port on 127.0.0.1.
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// One WebDriver request (HTTP/1.1, `Connection: close`); the JSON `value`.
fn webdriver(port: u16, method: &str, path: &str, body: &Value) -> Result<Value> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    let body = body.to_string();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n{body}",
        len = body.len()
    )?;
    // Read the head, then exactly Content-Length bytes (chromedriver may keep
    // the connection open).
    let mut reader = std::io::BufReader::new(s);
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut reader, &mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body)?;
    let json = String::from_utf8_lossy(&body);
    let v: Value = serde_json::from_str(json.trim())
        .with_context(|| format!("chromedriver answered {path} with `{json}`"))?;
    if let Some(err) = v["value"].get("error") {
        bail!(
            "chromedriver {path}: {err}: {msg}",
            msg = v["value"]["message"]
        );
    }
    Ok(v["value"].clone())
}

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Loads the page, chats once, returns `(answer, status line)`.
pub fn run(chromedriver: &Path, web: &Path, model: &Path) -> Result<(String, String)> {
    let site = free_port()?;
    let (web, model) = (web.to_path_buf(), model.to_path_buf());
    std::thread::spawn(move || super::serve::serve_quiet(&web, &model, site));
    let port = free_port()?;
    let _driver = Driver(
        Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting chromedriver")?,
    );
    let started = Instant::now();
    let caps = json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {"args": [
        "--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
        "--enable-unsafe-webgpu", "--enable-features=Vulkan"
    ]}}}});
    let session = loop {
        match webdriver(port, "POST", "/session", &caps) {
            Ok(v) => break v["sessionId"].as_str().unwrap_or_default().to_string(),
            Err(e) if started.elapsed() < Duration::from_secs(20) => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => return Err(e),
        }
    };
    let base = format!("/session/{session}");
    let result = (|| {
        webdriver(
            port,
            "POST",
            &format!("{base}/url"),
            &json!({"url": format!("http://127.0.0.1:{site}/?autoload")}),
        )?;
        let script = |s: &str| -> Result<Value> {
            webdriver(
                port,
                "POST",
                &format!("{base}/execute/sync"),
                &json!({"script": s, "args": []}),
            )
        };
        let state = "const $ = (i) => document.getElementById(i); const a = document.querySelector('.answer'); \
                     return {status: $('status').textContent, cls: $('status').className, \
                     ready: !$('send').disabled, adapter: $('adapter').textContent, \
                     answer: a ? a.textContent : null, done: !!(a && a.dataset.done)};";
        let deadline = Instant::now() + Duration::from_secs(600);
        let mut sent = false;
        loop {
            let s = script(state)?;
            if s["cls"] == "error" {
                bail!("the page reports: {status}", status = s["status"]);
            }
            if s["done"] == true {
                let answer = s["answer"].as_str().unwrap_or_default().to_string();
                let status = s["status"].as_str().unwrap_or_default().to_string();
                let adapter = s["adapter"].as_str().unwrap_or_default();
                eprintln!("xtask: demo page on `{adapter}`: {status}; answer {answer:?}");
                return Ok((answer, status));
            }
            if !sent && s["ready"] == true {
                script("document.getElementById('max').value = '8'; document.getElementById('send').click(); return null;")?;
                sent = true;
            }
            if Instant::now() > deadline {
                bail!("the demo page gave no answer within 600 s (last state {s})");
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    })();
    let _ = webdriver(port, "DELETE", &base, &json!({}));
    result
}
