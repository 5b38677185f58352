//! Test hook (feature `testing`): the dense tensor-core GEMMs' (`coop_fast`,
//! `coop_f16`) own modules with their cooperative-matrix operations replaced
//! by scalar code, so adapters without cooperative matrices (CI's lavapipe)
//! run everything else of them: the host's launches and parameters, the
//! pre-passes' scratch layouts, row and token blocks, the staging and its
//! indices, the fragments' offsets, the epilogues and their bounds. What it
//! cannot check is the driver's cooperative-matrix semantics, which this
//! emulation takes from the kernels verified on hardware (`coop_peak`,
//! `mm_coop`): `coopLoadT` of A reads a row-major `[m][k]` tile, `coopLoad`
//! of B a `[n][k]` tile (column-major B), `coopStoreT` writes C row-major.
//!
//! The text is transformed line by line: the extension goes, the subgroup
//! builtins become `lid / SGS` and `lid % SGS` (4 "subgroups" of 32 lanes
//! whatever the adapter has: WG = 128), a fragment load becomes its array tag
//! and offset (the multiply-add reads workgroup memory itself: nothing writes
//! the tiles between a step's loads and its multiply-adds), an accumulator
//! becomes each lane's 8 of its 256 elements (element `lane + 32 i`). Each
//! kernel's `emulation` module names its files, entry points and uniforms
//! ([`Emulation`]) and keeps its own switch.

use std::cell::Cell;
use std::sync::OnceLock;
use std::thread::LocalKey;

use crate::shaders::ShaderSource;
use crate::spec::{KernelSpec, Needs, Part, UniformLayout};

/// The emulation's workgroup: 4 × 32 lanes.
pub(super) const WG: u32 = 128;

/// One GEMM's emulation: the kernel's fast and exact (split) variants, the
/// split file appended to the fast one as on hardware.
pub(super) struct Emulation {
    /// This thread's switch (true inside [`Emulation::emulate`]).
    pub(super) active: &'static LocalKey<Cell<bool>>,
    /// The emulated kernels' label (the module is `{label}.wgsl`).
    pub(super) label: &'static str,
    /// The fast variant's file and the split variant's.
    pub(super) files: &'static [&'static ShaderSource],
    /// Files appended after the transformed text.
    pub(super) support: &'static [&'static ShaderSource],
    pub(super) uniforms: &'static [&'static UniformLayout],
    /// The fast and split entry points.
    pub(super) entries: [&'static str; 2],
    pub(super) specs: OnceLock<[KernelSpec; 2]>,
}

impl Emulation {
    /// Runs `f` with this GEMM's launches on this thread built from the
    /// emulated module (and its support check needing only f16).
    pub(super) fn emulate<R>(&'static self, f: impl FnOnce() -> R) -> R {
        struct Reset(&'static LocalKey<Cell<bool>>, bool);
        impl Drop for Reset {
            fn drop(&mut self) {
                self.0.with(|a| a.set(self.1));
            }
        }
        let _reset = Reset(self.active, self.active.with(|a| a.replace(true)));
        f()
    }

    /// Whether this thread is inside [`Emulation::emulate`].
    pub(super) fn active(&self) -> bool {
        self.active.with(Cell::get)
    }

    /// The emulated kernel of the fast (`split` false) or exact variant.
    pub(super) fn spec(&'static self, split: bool) -> &'static KernelSpec {
        let specs = self.specs.get_or_init(|| {
            let file: &'static ShaderSource = Box::leak(Box::new(ShaderSource {
                name: Box::leak(format!("{label}.wgsl", label = self.label).into_boxed_str()),
                text: Box::leak(self.source().into_boxed_str()),
            }));
            let parts: Vec<Part> = std::iter::once(file)
                .chain(self.support.iter().copied())
                .map(Part::File)
                .collect();
            let parts: &'static [Part] = Box::leak(parts.into_boxed_slice());
            self.entries.map(|entry| KernelSpec {
                label: self.label,
                parts,
                entry,
                uniforms: self.uniforms,
                needs: Needs::Baseline,
            })
        });
        &specs[usize::from(split)]
    }

    /// `spec` itself, or inside [`Emulation::emulate`] the emulated kernel of
    /// its variant.
    pub(super) fn or(&'static self, spec: &'static KernelSpec, split: bool) -> &'static KernelSpec {
        if self.active() {
            self.spec(split)
        } else {
            spec
        }
    }

    /// The transformed text of both files (the emulation functions come last).
    fn source(&self) -> String {
        let mut out = String::new();
        let text = self
            .files
            .iter()
            .map(|f| f.text)
            .collect::<Vec<_>>()
            .join("\n");
        for line in text.lines() {
            let t = line.trim();
            if t == "enable wgpu_cooperative_matrix;"
                || t.starts_with("@builtin(subgroup_id)")
                || t.starts_with("@builtin(subgroup_invocation_id)")
            {
                continue;
            }
            let mut l = line.replace("coop_mat16x16<f32, C>()", "array<f32, 8>()");
            for (from, tag) in [
                ("coopLoadT<coop_mat16x16<f16, A>>(&sx4[", 0),
                ("coopLoadT<coop_mat16x16<f16, A>>(&sxl4[", 1),
                ("coopLoad<coop_mat16x16<f16, B>>(&sw4[", 2),
            ] {
                if l.contains(from) {
                    l = l
                        .replace(from, &format!("vec2<u32>({tag}u, "))
                        .replace("], LDS4);", ");");
                }
            }
            if let Some((lhs, rest)) = l.split_once(" = coopMultiplyAdd(") {
                // `c = coopMultiplyAdd(a, b, c);` → `emu_mma(a, b, &c, sl);`
                let args: Vec<&str> = rest.trim_end_matches(");").split(", ").collect();
                let indent = &lhs[..lhs.len() - lhs.trim_start().len()];
                l = format!(
                    "{indent}emu_mma({a}, {b}, &{c}, sl);",
                    a = args[0],
                    b = args[1],
                    c = lhs.trim()
                );
            }
            if let Some((indent, rest)) = l.split_once("coopStoreT(") {
                // `coopStoreT(c, &st_y[off], 16u);` → `emu_store(&c, off, sl);`
                let (c, rest) = rest.split_once(", &st_y[").unwrap_or(("", ""));
                let off = rest.trim_end_matches("], 16u);");
                l = format!("{indent}emu_store(&{c}, {off}, sl);");
            }
            out.push_str(&l);
            out.push('\n');
            if t.ends_with("@builtin(workgroup_id) wid: vec3<u32>) {") {
                out.push_str("    let sg = lid / SGS;\n    let sl = lid % SGS;\n");
            }
        }
        out.push_str(EMU_FNS);
        out
    }

    /// Test: the transformation leaves no cooperative-matrix operation, and
    /// the module validates without the capability.
    #[cfg(test)]
    fn check_module(&'static self) {
        let src = self.source();
        for line in src.lines().filter(|l| !l.trim_start().starts_with("//")) {
            assert!(
                ![
                    "coopLoad",
                    "coopMultiplyAdd",
                    "coopStore",
                    "coop_mat",
                    "@builtin(subgroup"
                ]
                .iter()
                .any(|op| line.contains(op)),
                "left: {line}"
            );
        }
        let full = std::iter::once(src.as_str())
            .chain(self.support.iter().map(|f| f.text))
            .collect::<Vec<_>>()
            .join("\n");
        let module = naga::front::wgsl::parse_str(&full)
            .unwrap_or_else(|e| panic!("{d}", d = e.emit_to_string(&full)));
        use naga::valid::Capabilities as C;
        naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            C::default() | C::SHADER_FLOAT16 | C::SHADER_FLOAT16_IN_FLOAT32,
        )
        .validate(&module)
        .unwrap_or_else(|e| panic!("validation: {e:?}"));
        for split in [false, true] {
            assert!(module
                .entry_points
                .iter()
                .any(|e| e.name == self.spec(split).entry));
        }
    }
}

/// Scalar stand-ins, appended to the transformed file.
const EMU_FNS: &str = r#"
// Element i (row-major, 4 halves per vec4) from offset r.y of array r.x.
fn emu_elem(r: vec2<u32>, i: u32) -> f32 {
    let v = r.y + i / 4u;
    let q = i % 4u;
    if (r.x == 0u) {
        return f32(sx4[v][q]);
    } else if (r.x == 1u) {
        return f32(sxl4[v][q]);
    }
    return f32(sw4[v][q]);
}

// c += A B for this lane's elements: A[m][k] at row m of a (stride LDS4
// vec4s), B[k][n] at row n of b.
// The trip counts add the params' padding (0): loops the CPU adapter's
// compiler cannot unroll, 32 to 64 calls of them compile in seconds.
fn emu_mma(a: vec2<u32>, b: vec2<u32>, c: ptr<function, array<f32, 8>>, sl: u32) {
    let kn = 16u + p._pad0;
    for (var i = 0u; i < 8u + p._pad1; i++) {
        let e = sl + i * SGS;
        let m = e / 16u;
        let n = e % 16u;
        var s = (*c)[i];
        for (var k = 0u; k < kn; k++) {
            s += emu_elem(a, m * LDS4 * 4u + k) * emu_elem(b, n * LDS4 * 4u + k);
        }
        (*c)[i] = s;
    }
}

// Row-major 16 x 16 store of this lane's elements at st_y[off].
fn emu_store(c: ptr<function, array<f32, 8>>, off: u32, sl: u32) {
    for (var i = 0u; i < 8u; i++) {
        st_y[off + sl + i * SGS] = (*c)[i];
    }
}
"#;

#[cfg(test)]
mod tests {
    #[test]
    fn emulated_modules_have_no_coop_ops_and_validate() {
        super::super::coop_f16::emulation::EMULATION.check_module();
        super::super::coop_fast::emulation::EMULATION.check_module();
    }
}
