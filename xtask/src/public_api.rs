//! `cargo xtask public-api`: writes the public API of each published crate
//! to `xtask/public-api/<crate>.txt`; `cargo xtask ci` regenerates it in
//! memory and fails on any difference, so an API change is a deliberate,
//! reviewed edit of the listing. (`cargo-semver-checks` needs a published
//! baseline and `cargo-public-api` nightly rustdoc JSON; this reads the
//! sources with `syn` and needs neither.)
//!
//! What is listed, one sorted line per item (docs and bodies left out):
//! every `pub` item of a publicly reachable module; `pub` items of private
//! modules whose name a `pub use` re-exports (a glob re-exports its module's
//! items); `pub` methods, constants and trait impls of those types wherever
//! their `impl` blocks are; struct fields and enum variants one per line;
//! derives; `#[cfg(...)]` gates as a prefix. `#[cfg(test)]`,
//! `#[doc(hidden)]` and `feature = "testing"` items (the workspace's test
//! harnesses) are left out. Names are matched by identifier, not
//! resolved like rustc: a private item sharing a re-exported name is listed
//! too (harmless: the listing only has to change when the API does).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use quote::ToTokens;
use syn::{Attribute, Fields, ImplItem, Item, TraitItem, UseTree, Visibility};

use crate::package::PUBLISH_ORDER;

const USAGE: &str =
    "usage: cargo xtask public-api   (rewrites xtask/public-api/<crate>.txt from the sources)";

/// `xtask/public-api`.
fn listing_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("public-api")
}

fn crate_src(krate: &str) -> PathBuf {
    let dir = krate.strip_prefix("qwgpu-").unwrap_or(krate);
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../crates")
        .join(dir)
        .join("src/lib.rs")
}

/// Regenerates every listing.
pub fn run(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        None => {}
        Some("--check") if args.len() == 1 => return check(),
        Some("-h" | "--help") => {
            println!("{USAGE}");
            return Ok(());
        }
        Some(a) => bail!("unknown argument `{a}`\n{USAGE}"),
    }
    let dir = listing_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for krate in PUBLISH_ORDER {
        let text = listing(krate)?;
        let path = dir.join(format!("{krate}.txt"));
        std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
        eprintln!(
            "xtask: {path} ({n} items)",
            path = path.display(),
            n = text.lines().count()
        );
    }
    Ok(())
}

/// Fails, naming every added and removed line, when a listing is out of date.
pub fn check() -> Result<()> {
    let mut report = String::new();
    for krate in PUBLISH_ORDER {
        let want = listing(krate)?;
        let path = listing_dir().join(format!("{krate}.txt"));
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        if have != want {
            report.push_str(&diff(krate, &have, &want));
        }
    }
    if !report.is_empty() {
        bail!(
            "the public API differs from the committed listing in xtask/public-api/:\n{report}\
             If the change is deliberate, run `cargo xtask public-api` and commit xtask/public-api/."
        );
    }
    eprintln!("xtask: public API matches xtask/public-api/");
    Ok(())
}

/// `- line` for each line only in `have`, `+ line` for each only in `want`.
fn diff(krate: &str, have: &str, want: &str) -> String {
    let have: BTreeSet<&str> = have.lines().collect();
    let want: BTreeSet<&str> = want.lines().collect();
    let mut out = format!("{krate}:\n");
    for l in have.difference(&want) {
        out.push_str(&format!("  - {l}\n"));
    }
    for l in want.difference(&have) {
        out.push_str(&format!("  + {l}\n"));
    }
    out
}

/// The listing of one crate (sorted lines, newline-terminated).
pub fn listing(krate: &str) -> Result<String> {
    let root = crate_src(krate);
    let mut modules = Vec::new();
    let ident = krate.replace('-', "_");
    let src = root.parent().unwrap_or(Path::new("."));
    collect_modules(&root, src, ident, true, String::new(), &mut modules)?;
    Ok(render(&modules))
}

/// One module's items, its path, whether it is reachable from outside, and
/// the `#[cfg]` gates on the way to it.
struct Module {
    path: String,
    public: bool,
    cfg: String,
    items: Vec<Item>,
}

fn collect_modules(
    file: &Path,
    dir_of_children: &Path,
    path: String,
    public: bool,
    cfg: String,
    out: &mut Vec<Module>,
) -> Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let parsed = syn::parse_file(&text).with_context(|| format!("parsing {}", file.display()))?;
    walk_items(parsed.items, file, dir_of_children, path, public, cfg, out)
}

fn walk_items(
    items: Vec<Item>,
    file: &Path,
    dir_of_children: &Path,
    path: String,
    public: bool,
    cfg: String,
    out: &mut Vec<Module>,
) -> Result<()> {
    let mut kept = Vec::new();
    for item in items {
        let Item::Mod(m) = item else {
            kept.push(item);
            continue;
        };
        if skipped(&m.attrs) {
            continue;
        }
        let name = m.ident.to_string();
        let child_path = format!("{path}::{name}");
        let child_public = public && is_pub(&m.vis);
        let child_cfg = format!("{cfg}{gates}", gates = cfg_gates(&m.attrs));
        if is_pub(&m.vis) {
            kept.push(Item::Mod(syn::ItemMod {
                content: None,
                semi: Some(Default::default()),
                ..m.clone()
            }));
        }
        match m.content {
            Some((_, inner)) => walk_items(
                inner,
                file,
                &dir_of_children.join(&name),
                child_path,
                child_public,
                child_cfg,
                out,
            )?,
            None => {
                let (child_file, child_dir) = module_file(&m.attrs, file, dir_of_children, &name)?;
                collect_modules(
                    &child_file,
                    &child_dir,
                    child_path,
                    child_public,
                    child_cfg,
                    out,
                )?
            }
        }
    }
    out.push(Module {
        path,
        public,
        cfg,
        items: kept,
    });
    Ok(())
}

/// The file of `mod name;` and the folder of its own children.
fn module_file(
    attrs: &[Attribute],
    file: &Path,
    dir_of_children: &Path,
    name: &str,
) -> Result<(PathBuf, PathBuf)> {
    for a in attrs {
        if let syn::Meta::NameValue(nv) = &a.meta {
            if nv.path.is_ident("path") {
                if let syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(s),
                    ..
                }) = &nv.value
                {
                    let base = file.parent().unwrap_or(Path::new("."));
                    let f = base.join(s.value());
                    let stem = f.file_stem().unwrap_or_default().to_owned();
                    let dir = f.parent().unwrap_or(base).join(stem);
                    return Ok((f, dir));
                }
            }
        }
    }
    let flat = dir_of_children.join(format!("{name}.rs"));
    if flat.exists() {
        return Ok((flat, dir_of_children.join(name)));
    }
    let nested = dir_of_children.join(name).join("mod.rs");
    if nested.exists() {
        return Ok((nested, dir_of_children.join(name)));
    }
    bail!(
        "module `{name}` declared in {file} has no file {flat} or {nested}",
        file = file.display(),
        flat = flat.display(),
        nested = nested.display()
    )
}

fn is_pub(v: &Visibility) -> bool {
    matches!(v, Visibility::Public(_))
}

/// `#[cfg(test)]` and `#[doc(hidden)]` items are not public API, nor is what
/// the `testing` feature adds (the workspace's own test harnesses, documented
/// as such).
fn skipped(attrs: &[Attribute]) -> bool {
    attrs.iter().any(|a| {
        let text = tidy(a.to_token_stream().to_string());
        text == "#[cfg(test)]"
            || text == "#[doc(hidden)]"
            || (a.path().is_ident("cfg") && text.contains("feature = \"testing\""))
    })
}

/// The item's `#[cfg(...)]` attributes as a prefix (`#[cfg(feature = "testing")] `).
fn cfg_gates(attrs: &[Attribute]) -> String {
    attrs
        .iter()
        .filter(|a| a.path().is_ident("cfg"))
        .map(|a| format!("{attr} ", attr = tidy(a.to_token_stream().to_string())))
        .collect()
}

/// Attributes that are API: derives, `repr`, `non_exhaustive`, `must_use`.
fn api_attrs(attrs: &[Attribute]) -> String {
    attrs
        .iter()
        .filter(|a| {
            ["derive", "repr", "non_exhaustive", "must_use"]
                .iter()
                .any(|n| a.path().is_ident(n))
        })
        .map(|a| format!("{attr} ", attr = tidy(a.to_token_stream().to_string())))
        .collect()
}

/// Token-stream text with the spacing of ordinary Rust source.
fn tidy(s: String) -> String {
    let mut s = s;
    for (from, to) in [
        (" :: ", "::"),
        (":: ", "::"),
        (" ,", ","),
        ("& ", "&"),
        (" (", "("),
        ("( ", "("),
        (" )", ")"),
        (" < ", "<"),
        ("< ", "<"),
        (" >", ">"),
        (" : ", ": "),
        (" ;", ";"),
        ("# [", "#["),
        (" [", "["),
        (" !", "!"),
        (" .", "."),
        (". ", "."),
        (" ?", "?"),
    ] {
        s = s.replace(from, to);
    }
    // Undo the joins that `(` and `[` may not take.
    for (from, to) in [
        ("->(", "-> ("),
        (":[", ": ["),
        ("=[", "= ["),
        (",(", ", ("),
        (":(", ": ("),
        ("&[", "&["),
        ("fn(", "fn("),
        (",)", ")"),
        (",>", ">"),
        (" <(", "<("),
        ("mut[", "mut ["),
    ] {
        s = s.replace(from, to);
    }
    s
}

fn text(t: &impl ToTokens) -> String {
    tidy(t.to_token_stream().to_string())
}

/// Names `pub use` makes public, and the modules whose items a glob does.
fn reexports(modules: &[Module]) -> (BTreeSet<String>, BTreeSet<String>) {
    fn leaves(
        tree: &UseTree,
        prefix: Option<&str>,
        names: &mut BTreeSet<String>,
        globs: &mut BTreeSet<String>,
    ) {
        match tree {
            UseTree::Path(p) => {
                let seg = p.ident.to_string();
                leaves(&p.tree, Some(&seg), names, globs)
            }
            UseTree::Name(n) => {
                names.insert(n.ident.to_string());
            }
            UseTree::Rename(r) => {
                names.insert(r.ident.to_string());
            }
            UseTree::Glob(_) => {
                if let Some(m) = prefix {
                    globs.insert(m.to_string());
                }
            }
            UseTree::Group(g) => {
                for t in &g.items {
                    leaves(t, prefix, names, globs);
                }
            }
        }
    }
    let (mut names, mut globs) = (BTreeSet::new(), BTreeSet::new());
    for m in modules.iter().filter(|m| m.public) {
        for item in &m.items {
            if let Item::Use(u) = item {
                if is_pub(&u.vis) && !skipped(&u.attrs) {
                    leaves(&u.tree, None, &mut names, &mut globs);
                }
            }
        }
    }
    (names, globs)
}

fn type_name(item: &Item) -> Option<String> {
    match item {
        Item::Struct(s) => Some(s.ident.to_string()),
        Item::Enum(e) => Some(e.ident.to_string()),
        Item::Trait(t) => Some(t.ident.to_string()),
        Item::Type(t) => Some(t.ident.to_string()),
        Item::Union(u) => Some(u.ident.to_string()),
        _ => None,
    }
}

fn item_name(item: &Item) -> Option<String> {
    match item {
        Item::Fn(f) => Some(f.sig.ident.to_string()),
        Item::Const(c) => Some(c.ident.to_string()),
        Item::Static(s) => Some(s.ident.to_string()),
        Item::Macro(m) => m.ident.as_ref().map(|i| i.to_string()),
        other => type_name(other),
    }
}

fn item_attrs(item: &Item) -> &[Attribute] {
    match item {
        Item::Fn(i) => &i.attrs,
        Item::Const(i) => &i.attrs,
        Item::Static(i) => &i.attrs,
        Item::Macro(i) => &i.attrs,
        Item::Struct(i) => &i.attrs,
        Item::Enum(i) => &i.attrs,
        Item::Trait(i) => &i.attrs,
        Item::Type(i) => &i.attrs,
        Item::Union(i) => &i.attrs,
        Item::Impl(i) => &i.attrs,
        Item::Use(i) => &i.attrs,
        Item::Mod(i) => &i.attrs,
        _ => &[],
    }
}

fn item_is_pub(item: &Item) -> bool {
    match item {
        Item::Fn(i) => is_pub(&i.vis),
        Item::Const(i) => is_pub(&i.vis),
        Item::Static(i) => is_pub(&i.vis),
        Item::Struct(i) => is_pub(&i.vis),
        Item::Enum(i) => is_pub(&i.vis),
        Item::Trait(i) => is_pub(&i.vis),
        Item::Type(i) => is_pub(&i.vis),
        Item::Union(i) => is_pub(&i.vis),
        Item::Use(i) => is_pub(&i.vis),
        Item::Mod(i) => is_pub(&i.vis),
        Item::Macro(m) => m.attrs.iter().any(|a| a.path().is_ident("macro_export")),
        _ => false,
    }
}

/// The last identifier of an impl's self type (`GpuContext` of `crate::GpuContext`).
fn self_type_name(ty: &syn::Type) -> Option<String> {
    match ty {
        syn::Type::Path(p) => p.path.segments.last().map(|s| s.ident.to_string()),
        syn::Type::Reference(r) => self_type_name(&r.elem),
        _ => None,
    }
}

fn render(modules: &[Module]) -> String {
    let (names, globs) = reexports(modules);
    let in_glob = |m: &Module| {
        m.path
            .rsplit("::")
            .next()
            .is_some_and(|last| globs.contains(last))
    };
    // Types reachable from outside: public-module types and re-exported names.
    let mut public_types = names.clone();
    for m in modules {
        for item in &m.items {
            if item_is_pub(item) && (m.public || in_glob(m)) && !skipped(item_attrs(item)) {
                if let Some(n) = type_name(item) {
                    public_types.insert(n);
                }
            }
        }
    }
    let mut lines = BTreeSet::new();
    for m in modules {
        for item in &m.items {
            let attrs = item_attrs(item);
            if skipped(attrs) {
                continue;
            }
            let gate = format!("{cfg}{own}", cfg = m.cfg, own = cfg_gates(attrs));
            if let Item::Impl(imp) = item {
                impl_lines(imp, &gate, &public_types, &mut lines);
                continue;
            }
            if !item_is_pub(item) {
                continue;
            }
            let listed =
                m.public || in_glob(m) || item_name(item).is_some_and(|n| names.contains(&n));
            if listed {
                item_lines(item, &m.path, &gate, &mut lines);
            }
        }
    }
    let mut out = String::new();
    for l in lines {
        out.push_str(&l);
        out.push('\n');
    }
    out
}

fn item_lines(item: &Item, path: &str, gate: &str, lines: &mut BTreeSet<String>) {
    let api = api_attrs(item_attrs(item));
    let mut add = |s: String| {
        lines.insert(format!("{gate}{path}: {s}"));
    };
    match item {
        Item::Fn(f) => add(text(&f.sig)),
        Item::Const(c) => add(format!(
            "const {name}: {ty}",
            name = c.ident,
            ty = text(&c.ty)
        )),
        Item::Static(s) => add(format!(
            "static {name}: {ty}",
            name = s.ident,
            ty = text(&s.ty)
        )),
        Item::Type(t) => add(format!(
            "type {name}{generics} = {ty}",
            name = t.ident,
            generics = text(&t.generics),
            ty = text(&t.ty)
        )),
        Item::Macro(m) => add(format!(
            "macro {name}!",
            name = m.ident.as_ref().map(|i| i.to_string()).unwrap_or_default()
        )),
        Item::Use(u) => add(format!("use {tree}", tree = text(&u.tree))),
        Item::Mod(m) => add(format!("mod {name}", name = m.ident)),
        Item::Struct(s) => {
            let name = &s.ident;
            add(format!(
                "{api}struct {name}{generics}",
                generics = text(&s.generics)
            ));
            field_lines(&s.fields, &format!("{name}"), &mut add);
        }
        Item::Union(u) => add(format!("{api}union {name}", name = u.ident)),
        Item::Enum(e) => {
            let name = &e.ident;
            add(format!(
                "{api}enum {name}{generics}",
                generics = text(&e.generics)
            ));
            for v in &e.variants {
                let disc = v
                    .discriminant
                    .as_ref()
                    .map(|(_, d)| format!(" = {d}", d = text(d)))
                    .unwrap_or_default();
                let fields = match &v.fields {
                    Fields::Unit => String::new(),
                    Fields::Unnamed(u) => {
                        let tys: Vec<String> = u.unnamed.iter().map(|f| text(&f.ty)).collect();
                        format!("({tys})", tys = tys.join(", "))
                    }
                    Fields::Named(n) => {
                        let fs: Vec<String> = n
                            .named
                            .iter()
                            .map(|f| {
                                format!(
                                    "{name}: {ty}",
                                    name =
                                        f.ident.as_ref().map(|i| i.to_string()).unwrap_or_default(),
                                    ty = text(&f.ty)
                                )
                            })
                            .collect();
                        format!(" {{ {fs} }}", fs = fs.join(", "))
                    }
                };
                add(format!(
                    "{name}::{variant}{fields}{disc}",
                    variant = v.ident
                ));
            }
        }
        Item::Trait(t) => {
            let name = &t.ident;
            let bounds = if t.supertraits.is_empty() {
                String::new()
            } else {
                format!(": {b}", b = text(&t.supertraits))
            };
            add(format!(
                "trait {name}{generics}{bounds}",
                generics = text(&t.generics)
            ));
            for ti in &t.items {
                let sig = match ti {
                    TraitItem::Fn(f) => text(&f.sig),
                    TraitItem::Const(c) => {
                        format!("const {n}: {ty}", n = c.ident, ty = text(&c.ty))
                    }
                    TraitItem::Type(ty) => format!("type {n}", n = ty.ident),
                    _ => continue,
                };
                add(format!("trait {name}: {sig}"));
            }
        }
        _ => {}
    }
}

fn field_lines(fields: &Fields, owner: &str, add: &mut impl FnMut(String)) {
    let mut private = false;
    match fields {
        Fields::Named(n) => {
            for f in &n.named {
                if is_pub(&f.vis) {
                    let name = f.ident.as_ref().map(|i| i.to_string()).unwrap_or_default();
                    add(format!("{owner}.{name}: {ty}", ty = text(&f.ty)));
                } else {
                    private = true;
                }
            }
        }
        Fields::Unnamed(u) => {
            for (i, f) in u.unnamed.iter().enumerate() {
                if is_pub(&f.vis) {
                    add(format!("{owner}.{i}: {ty}", ty = text(&f.ty)));
                } else {
                    private = true;
                }
            }
        }
        Fields::Unit => {}
    }
    if private {
        add(format!("{owner} has private fields"));
    }
}

fn impl_lines(
    imp: &syn::ItemImpl,
    gate: &str,
    public_types: &BTreeSet<String>,
    lines: &mut BTreeSet<String>,
) {
    let Some(ty_name) = self_type_name(&imp.self_ty) else {
        return;
    };
    if !public_types.contains(&ty_name) {
        return;
    }
    let generics = text(&imp.generics);
    let self_ty = text(&imp.self_ty);
    if let Some((neg, trait_path, _)) = &imp.trait_ {
        let not = if neg.is_some() { "!" } else { "" };
        lines.insert(format!(
            "{gate}impl{generics} {not}{tr} for {self_ty}",
            tr = text(trait_path)
        ));
        return;
    }
    for ii in &imp.items {
        let (vis, attrs, sig) = match ii {
            ImplItem::Fn(f) => (&f.vis, &f.attrs, text(&f.sig)),
            ImplItem::Const(c) => (
                &c.vis,
                &c.attrs,
                format!("const {n}: {ty}", n = c.ident, ty = text(&c.ty)),
            ),
            _ => continue,
        };
        if is_pub(vis) && !skipped(attrs) {
            lines.insert(format!(
                "{gate}{own}impl{generics} {self_ty}: {sig}",
                own = cfg_gates(attrs)
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing_of(src: &str) -> String {
        let file = syn::parse_file(src).expect("parse");
        let mut out = Vec::new();
        walk_items(
            file.items,
            Path::new("lib.rs"),
            Path::new("."),
            "k".into(),
            true,
            String::new(),
            &mut out,
        )
        .expect("walk");
        render(&out)
    }

    #[test]
    fn lists_public_items_and_reexports_but_not_private_ones() {
        let got = listing_of(
            r#"mod inner { pub struct Ctx { pub a: u32, b: u8 } impl Ctx { pub fn new(x: &[u8]) -> Result<Self, E> { todo!() } fn hidden() {} } pub fn internal() {} }
             pub use inner::Ctx;
             pub mod open { pub const N: usize = 3; pub(crate) fn no() {} #[doc(hidden)] pub fn hid() {} }
             #[cfg(test)] pub fn test_only() {}
             #[cfg(feature = "testing")] pub mod testing { pub fn harness() {} }
             #[cfg(feature = "wasm")] pub fn gated() {}
             #[derive(Debug, Clone)] pub enum Mode { A, B(u32) }"#,
        );
        let want = "#[cfg(feature = \"wasm\")] k: fn gated()\n\
                    impl Ctx: fn new(x: &[u8]) -> Result<Self, E>\n\
                    k: #[derive(Debug, Clone)] enum Mode\n\
                    k: Mode::A\n\
                    k: Mode::B(u32)\n\
                    k: mod open\n\
                    k: use inner::Ctx\n\
                    k::inner: Ctx has private fields\n\
                    k::inner: Ctx.a: u32\n\
                    k::inner: struct Ctx\n\
                    k::open: const N: usize\n";
        assert_eq!(got, want);
    }

    #[test]
    fn a_changed_signature_shows_in_the_diff() {
        let d = diff("k", "k: fn f(a: u32)\n", "k: fn f(a: u64)\n");
        assert_eq!(d, "k:\n  - k: fn f(a: u32)\n  + k: fn f(a: u64)\n");
    }
}
