//! The project rule "format strings with several arguments use named/inline arguments, never positional
//! `{}` lists" as a test: a garbled user-facing line once came from positional arguments given out of order.
//! The scanner is a small tokenizer, not a Rust parser: it skips comments, char literals and lifetimes,
//! tracks brackets, and checks every string literal passed directly to a formatting macro (or a thiserror
//! `#[error(...)]` attribute).

use std::path::{Path, PathBuf};

/// Macros whose string arguments are format strings (std, anyhow, tracing).
const FORMAT_MACROS: &[&str] = &[
    "format",
    "format_args",
    "write",
    "writeln",
    "print",
    "println",
    "eprint",
    "eprintln",
    "panic",
    "assert",
    "assert_eq",
    "assert_ne",
    "debug_assert",
    "debug_assert_eq",
    "debug_assert_ne",
    "unreachable",
    "todo",
    "unimplemented",
    "bail",
    "anyhow",
    "ensure",
    "trace",
    "debug",
    "info",
    "warn",
    "error",
];

/// What a format string holds: positional placeholders (`{}`, `{:?}`, `{0}`) and all placeholders.
fn count_placeholders(literal: &str) -> (usize, usize) {
    let chars: Vec<char> = literal.chars().collect();
    let (mut positional, mut total, mut i) = (0, 0, 0);
    while i < chars.len() {
        match chars[i] {
            // `\u{0}` is a char escape, not a placeholder.
            '\\' if chars.get(i + 1) == Some(&'u') => {
                i = chars[i..]
                    .iter()
                    .position(|&c| c == '}')
                    .map_or(chars.len(), |p| i + p + 1);
            }
            '\\' => i += 2,
            '{' if chars.get(i + 1) == Some(&'{') => i += 2,
            '{' => {
                let end = chars[i..]
                    .iter()
                    .position(|&c| c == '}')
                    .map_or(chars.len(), |p| i + p);
                let inner: String = chars[i + 1..end].iter().collect();
                let arg = inner.split(':').next().unwrap_or("").trim();
                total += 1;
                if arg.is_empty() || arg.chars().all(|c| c.is_ascii_digit()) {
                    positional += 1;
                }
                i = end + 1;
            }
            _ => i += 1,
        }
    }
    (positional, total)
}

/// `Some(reason)` when a format string breaks the rule: two or more positional placeholders, or a
/// positional one next to named ones.
fn violation(literal: &str) -> Option<String> {
    let (positional, total) = count_placeholders(literal);
    (positional >= 1 && total >= 2).then(|| {
        format!("{positional} positional of {total} placeholders; use inline/named arguments")
    })
}

/// Every `(line, reason)` in one file's source text.
fn scan(src: &str) -> Vec<(usize, String)> {
    let c: Vec<char> = src.chars().collect();
    let mut found = Vec::new();
    // Bracket depth of each open formatting macro's argument list.
    let mut frames: Vec<usize> = Vec::new();
    let (mut depth, mut line, mut i) = (0usize, 1usize, 0usize);
    let is_ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch == '/' && c.get(i + 1) == Some(&'/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && c.get(i + 1) == Some(&'*') {
            i += 2;
            while i + 1 < c.len() && !(c[i] == '*' && c[i + 1] == '/') {
                line += usize::from(c[i] == '\n');
                i += 1;
            }
            i += 2;
        } else if ch == '\'' {
            // A char literal ('x', '\n', '\u{..}'), else a lifetime or label.
            if c.get(i + 1) == Some(&'\\') {
                i += 2;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if c.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                i += 1;
            }
        } else if ch == '"'
            || ((ch == 'r' || ch == 'b')
                && (i == 0 || !is_ident(c[i - 1]))
                && raw_or_byte_start(&c, i))
        {
            let start_line = line;
            let (text, end) = read_string(&c, i);
            line += text.matches('\n').count();
            if frames.last() == Some(&depth) {
                if let Some(reason) = violation(&text) {
                    found.push((start_line, reason));
                }
            }
            i = end;
        } else if is_ident(ch) && (i == 0 || !is_ident(c[i - 1])) {
            let start = i;
            while i < c.len() && is_ident(c[i]) {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            let mut j = i;
            let bang = c.get(j) == Some(&'!');
            j += usize::from(bang);
            while j < c.len() && c[j].is_whitespace() && c[j] != '\n' {
                j += 1;
            }
            let attr = word == "error" && start > 1 && c[start - 1] == '[' && c[start - 2] == '#';
            if (bang || attr)
                && FORMAT_MACROS.contains(&word.as_str())
                && matches!(c.get(j), Some('(' | '[' | '{'))
            {
                depth += 1;
                frames.push(depth);
                i = j + 1;
            }
        } else {
            match ch {
                '(' | '[' | '{' => depth += 1,
                ')' | ']' | '}' => {
                    if frames.last() == Some(&depth) {
                        frames.pop();
                    }
                    depth = depth.saturating_sub(1);
                }
                _ => {}
            }
            i += 1;
        }
    }
    found
}

/// Whether `c[i..]` opens a raw or byte string (`r"`, `r#"`, `b"`, `br"`, `br#"`).
fn raw_or_byte_start(c: &[char], i: usize) -> bool {
    let mut j = i;
    if c.get(j) == Some(&'b') {
        j += 1;
        if c.get(j) == Some(&'"') {
            return true;
        }
    }
    if c.get(j) != Some(&'r') {
        return false;
    }
    j += 1;
    while c.get(j) == Some(&'#') {
        j += 1;
    }
    c.get(j) == Some(&'"')
}

/// The text of the string literal at `c[i..]` (escapes left as written) and the index after it.
fn read_string(c: &[char], mut i: usize) -> (String, usize) {
    if c[i] == 'b' {
        i += 1;
    }
    if c[i] == 'r' {
        i += 1;
        let mut hashes = 0;
        while c[i] == '#' {
            hashes += 1;
            i += 1;
        }
        let start = i + 1;
        let mut j = start;
        while j < c.len() {
            if c[j] == '"' && (1..=hashes).all(|k| c.get(j + k) == Some(&'#')) {
                return (c[start..j].iter().collect(), j + 1 + hashes);
            }
            j += 1;
        }
        return (c[start..].iter().collect(), c.len());
    }
    let start = i + 1;
    let mut j = start;
    while j < c.len() && c[j] != '"' {
        j += if c[j] == '\\' { 2 } else { 1 };
    }
    let end = j.min(c.len());
    (c[start..end].iter().collect(), end + 1)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "target") {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_positional_format_lists_in_the_workspace() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let mut files = Vec::new();
    rust_files(&root.join("crates"), &mut files);
    rust_files(&root.join("xtask"), &mut files);
    files.sort();
    // Guards against a wrong root making the test pass vacuously.
    assert!(
        files.len() > 100,
        "found only {count} .rs files under {root}",
        count = files.len(),
        root = root.display()
    );
    let mut bad = Vec::new();
    for file in &files {
        let src = std::fs::read_to_string(file)
            .unwrap_or_else(|e| panic!("{file}: {e}", file = file.display()));
        for (line, reason) in scan(&src) {
            let rel = file.strip_prefix(root).unwrap_or(file);
            bad.push(format!("{rel}:{line}: {reason}", rel = rel.display()));
        }
    }
    assert!(
        bad.is_empty(),
        "format strings with positional argument lists:\n{list}",
        list = bad.join("\n")
    );
}

#[test]
fn scanner_flags_positional_lists() {
    let src = "fn f() {\n    let s = format!(\"{} rows of {:.3}\", n, w);\n}\n";
    assert_eq!(scan(src).len(), 1);
    assert_eq!(scan(src)[0].0, 2);
    // One positional next to a named one, in a tracing macro, over several lines, and a raw string.
    assert_eq!(
        scan("tracing::info!(\n    \"{} of {total}\",\n    n\n);").len(),
        1
    );
    assert_eq!(scan("write!(f, r#\"{:?} \"{}\"\"#, a, b)").len(), 1);
    assert_eq!(scan("#[error(\"{}: {detail}\", path.display())]").len(), 1);
    assert_eq!(scan("assert_eq!(a, b, \"{0} vs {1}\", a, b);").len(), 1);
    // The line number counts lines inside earlier multi-line strings.
    assert_eq!(scan("let a = \"x\ny\";\nprintln!(\"{}{}\", a, b);")[0].0, 3);
}

#[test]
fn scanner_accepts_named_escaped_and_non_format_strings() {
    for ok in [
        "format!(\"{n} rows of {name}\", name = w.name)",
        "format!(\"{}\", x)",
        "format!(\"{{}} {{}} {}\", x)",
        "let s = \"{} {}\";",
        "// println!(\"{} {}\", a, b);",
        "/* println!(\"{} {}\", a, b); */",
        "my_macro!(\"{} {}\", a, b)",
        "let c = '\"'; println!(\"{x}\");",
        "format!(\"{prompt}\\u{0}{text}\")",
        "fn f<'a>(x: &'a str) { println!(\"{x} {y:?}\") }",
        "format!(\"{a}\", a = call(\"{} {}\"))",
    ] {
        assert!(scan(ok).is_empty(), "flagged: {ok}");
    }
}
