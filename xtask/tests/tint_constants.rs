//! WGSL that naga (native) accepts and Tint (Chromium's WebGPU) refuses, found
//! by the browser tests, as a native check so it fails before a browser run:
//! a float literal beyond f32's finite range (`-3.4028235e38`, which naga
//! rounds to `f32::MIN`), and `bitcast<f32>` of a constant whose bits are an
//! infinity or NaN (Tint evaluates it when parsing and refuses a non-finite
//! constant). Both made every MoE routing and sampling module fail to compile
//! in the browser.

use std::collections::HashMap;
use std::path::Path;

fn shaders() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shaders");
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("shaders/")
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "wgsl"))
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (
                name,
                std::fs::read_to_string(e.path()).expect("read shader"),
            )
        })
        .collect();
    out.sort();
    out
}

/// The code of a line, without its `//` comment.
fn code(line: &str) -> &str {
    line.split("//").next().unwrap_or("")
}

/// Decimal float literals (`1.5e38`, `3.4028235e38f`) of a line.
fn float_literals(line: &str) -> Vec<String> {
    let b = line.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let starts = b[i].is_ascii_digit()
            && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'));
        if !starts {
            i += 1;
            continue;
        }
        let s = i;
        while i < b.len()
            && (b[i].is_ascii_alphanumeric()
                || b[i] == b'.'
                || ((b[i] == b'-' || b[i] == b'+') && matches!(b[i - 1], b'e' | b'E')))
        {
            i += 1;
        }
        let lit = &line[s..i];
        if !lit.starts_with("0x") && (lit.contains('.') || lit.contains(['e', 'E'])) {
            out.push(lit.trim_end_matches(['f', 'h']).to_string());
        }
    }
    out
}

fn findings(files: &[(String, String)]) -> Vec<String> {
    // `const NAME: u32 = 0x...u;` whose bits are a non-finite f32.
    let mut non_finite: HashMap<String, String> = HashMap::new();
    for (file, text) in files {
        for line in text.lines().map(code) {
            let Some(rest) = line.trim().strip_prefix("const ") else {
                continue;
            };
            let Some((name, value)) = rest.split_once('=') else {
                continue;
            };
            let name = name.split(':').next().unwrap_or("").trim();
            let v = value.trim().trim_end_matches(';').trim_end_matches('u');
            if let Some(hex) = v.strip_prefix("0x") {
                if let Ok(bits) = u32::from_str_radix(hex, 16) {
                    if !f32::from_bits(bits).is_finite() {
                        non_finite.insert(name.to_string(), file.clone());
                    }
                }
            }
        }
    }
    let mut found = Vec::new();
    for (file, text) in files {
        for (n, line) in text.lines().enumerate() {
            let line = code(line);
            let at = n + 1;
            for lit in float_literals(line) {
                if lit.parse::<f64>().is_ok_and(|v| v.abs() > f32::MAX as f64) {
                    found.push(format!("{file}:{at}: `{lit}` is beyond f32's finite range"));
                }
            }
            for (name, from) in &non_finite {
                if line.contains(&format!("bitcast<f32>({name})")) {
                    found.push(format!(
                        "{file}:{at}: bitcast<f32>({name}) of a non-finite constant (declared in {from})"
                    ));
                }
            }
        }
    }
    found
}

#[test]
fn shaders_have_no_constants_tint_refuses() {
    let found = findings(&shaders());
    assert!(
        found.is_empty(),
        "WGSL that Chromium's Tint refuses:\n{list}",
        list = found.join("\n")
    );
}

#[test]
fn the_check_finds_both_patterns() {
    let files = vec![
        (
            "a.wgsl".to_string(),
            "const INF_BITS: u32 = 0x7f800000u;\nvar m = -3.4028235e38;\n".to_string(),
        ),
        (
            "b.wgsl".to_string(),
            "let x = bitcast<f32>(INF_BITS); // 1e39 in a comment\nlet y = 3.4028234e38;\n"
                .to_string(),
        ),
    ];
    let found = findings(&files);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].starts_with("a.wgsl:2:"), "{found:?}");
    assert!(found[1].starts_with("b.wgsl:1:"), "{found:?}");
}
