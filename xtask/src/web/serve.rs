//! A static file server for the demo page: `web/` at `/`, the bundled model
//! at `/model/`, GET and HEAD with single `Range: bytes=a-b` requests (the
//! page streams each tensor by range, as from a model host). 127.0.0.1 only.

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result};

pub fn serve(web: &Path, model: &Path, port: u16) -> Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .with_context(|| format!("binding 127.0.0.1:{port}"))?;
    let flags = super::CHROMIUM_FLAGS;
    println!(
        "serving {web_display} on http://127.0.0.1:{port}/",
        web_display = web.display()
    );
    println!("the bundled model is at http://127.0.0.1:{port}/model/ (the page's default)");
    println!("open it in Chrome/Chromium 113+ (WebGPU); on Linux start it with: chromium {flags}");
    accept(listener, web, model)
}

/// [`serve`] without the banner (the page test's server).
pub fn serve_quiet(web: &Path, model: &Path, port: u16) -> Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .with_context(|| format!("binding 127.0.0.1:{port}"))?;
    accept(listener, web, model)
}

fn accept(listener: TcpListener, web: &Path, model: &Path) -> Result<()> {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let (web, model) = (web.to_path_buf(), model.to_path_buf());
        std::thread::spawn(move || {
            if let Err(e) = handle(stream, &web, &model) {
                eprintln!("xtask web: {e:#}");
            }
        });
    }
    Ok(())
}

/// The file a request path names, if it stays inside its root.
fn resolve(path: &str, web: &Path, model: &Path) -> Option<PathBuf> {
    let path = path.split('?').next().unwrap_or("");
    let (root, rest) = match path.strip_prefix("/model/") {
        Some(rest) => (model, rest),
        None => (web, path.trim_start_matches('/')),
    };
    let rest = if rest.is_empty() { "index.html" } else { rest };
    let rel = Path::new(rest);
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return None;
    }
    Some(root.join(rel))
}

fn content_type(p: &Path) -> &'static str {
    match p.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript",
        Some("wasm") => "application/wasm",
        Some("json") | Some("jinja") => "application/json",
        _ => "application/octet-stream",
    }
}

/// `bytes=a-b` or `bytes=a-` of a `len`-byte file, as an inclusive range.
fn parse_range(v: &str, len: u64) -> Option<(u64, u64)> {
    let (a, b) = v.trim().strip_prefix("bytes=")?.split_once('-')?;
    let a: u64 = a.parse().ok()?;
    let b: u64 = if b.is_empty() {
        len.checked_sub(1)?
    } else {
        b.parse().ok()?
    };
    (a <= b && b < len).then_some((a, b))
}

fn handle(stream: TcpStream, web: &Path, model: &Path) -> Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
        let (method, path) = (method.to_string(), path.to_string());
        let mut range = None;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("range") {
                    range = Some(v.trim().to_string());
                }
            }
        }
        let file = resolve(&path, web, model).filter(|p| p.is_file());
        let Some(file) = file.filter(|_| method == "GET" || method == "HEAD") else {
            let body = b"not found\n";
            write!(
                out,
                "HTTP/1.1 404 Not Found\r\nContent-Length: {len}\r\n\r\n",
                len = body.len()
            )?;
            out.write_all(body)?;
            continue;
        };
        let mut f = std::fs::File::open(&file)?;
        let len = f.metadata()?.len();
        let ty = content_type(&file);
        let (status, start, end) = match range.as_deref().map(|r| parse_range(r, len)) {
            Some(Some((a, b))) => ("206 Partial Content", a, b + 1),
            Some(None) => {
                write!(
                    out,
                    "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\nContent-Length: 0\r\n\r\n"
                )?;
                continue;
            }
            None => ("200 OK", 0, len),
        };
        let n = end - start;
        let mut head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {ty}\r\nContent-Length: {n}\r\nAccept-Ranges: bytes\r\nCache-Control: no-cache\r\n"
        );
        if status.starts_with("206") {
            head.push_str(&format!(
                "Content-Range: bytes {start}-{last}/{len}\r\n",
                last = end - 1
            ));
        }
        head.push_str("\r\n");
        out.write_all(head.as_bytes())?;
        if method == "GET" {
            f.seek(SeekFrom::Start(start))?;
            std::io::copy(&mut (&mut f).take(n), &mut out)?;
        }
        out.flush()?;
    }
}
