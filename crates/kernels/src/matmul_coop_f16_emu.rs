//! Test hook (feature `testing`): the f16-scratch tensor-core GEMM's own
//! module with its cooperative-matrix operations replaced by scalar code, so
//! adapters without cooperative matrices (CI's lavapipe) run everything else
//! of it: the host's launches and parameters, both pre-passes' scratch
//! layouts, row and token blocks, the staging and its indices, the
//! fragments' offsets, the epilogues and their bounds. It checks indexing
//! only: the driver's cooperative-matrix semantics are taken from the
//! kernels verified on hardware (`coop_peak`, `mm_coop`), as in
//! `coop_fast`'s emulation, whose transformation this is (`coopLoadT` of A
//! reads a row-major `[m][k]` tile, `coopLoad` of B a `[n][k]` tile,
//! `coopStoreT` writes C row-major).
//!
//! The text is transformed line by line: the extension goes, the subgroup
//! builtins become `lid / SGS` and `lid % SGS` (4 "subgroups" of 32 lanes
//! whatever the adapter has: WG = 128), a fragment load becomes its array tag
//! and offset (the multiply-add reads workgroup memory itself: nothing writes
//! the tiles between a step's loads and its multiply-adds), an accumulator
//! becomes each lane's 8 of its 256 elements (element `lane + 32 i`).

use std::cell::Cell;
use std::sync::OnceLock;

use crate::shaders::{self, ShaderSource};
use crate::spec::{KernelSpec, Needs, Part, Uniform};

use super::{F16Params, MATMUL_COOP_F16, MATMUL_COOP_F16_SPLIT, MATMUL_COOP_TAIL};

/// The emulation's workgroup: 4 × 32 lanes.
pub(super) const WG: u32 = 128;

thread_local! {
    static ACTIVE: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with the f16 GEMM's launches on this thread built from the
/// emulated module (and its support check needing only f16).
pub fn emulate<R>(f: impl FnOnce() -> R) -> R {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            ACTIVE.with(|a| a.set(self.0));
        }
    }
    let _reset = Reset(ACTIVE.with(|a| a.replace(true)));
    f()
}

/// Whether this thread is inside [`emulate`].
pub(super) fn active() -> bool {
    ACTIVE.with(Cell::get)
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
// The trip counts add F16Params' padding (0): loops the CPU adapter's
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

/// The transformed text of `matmul_coop_f16.wgsl` and
/// `matmul_coop_f16_split.wgsl`, each with its tail (the emulation functions
/// come last).
fn source() -> String {
    let mut out = String::new();
    let text = [
        MATMUL_COOP_F16.text,
        MATMUL_COOP_TAIL.text,
        MATMUL_COOP_F16_SPLIT.text,
        MATMUL_COOP_TAIL.text,
    ]
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

/// The emulated kernel of the fast (`split` false) or exact variant.
pub(super) fn spec(split: bool) -> &'static KernelSpec {
    static SPECS: OnceLock<[KernelSpec; 2]> = OnceLock::new();
    let specs = SPECS.get_or_init(|| {
        let file: &'static ShaderSource = Box::leak(Box::new(ShaderSource {
            name: "matmul_coop_f16_emulated.wgsl",
            text: Box::leak(source().into_boxed_str()),
        }));
        let parts: &'static [Part] =
            Box::leak(Box::new([Part::File(file), Part::File(&shaders::NUMERIC)]));
        let make = |entry| KernelSpec {
            label: "matmul_coop_f16_emulated",
            parts,
            entry,
            uniforms: &[&F16Params::LAYOUT],
            needs: Needs::Baseline,
        };
        [make("mm_coop_f16"), make("mm_coop_f16_split")]
    });
    &specs[usize::from(split)]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The transformation leaves no cooperative-matrix operation, and the
    /// module validates without the capability.
    #[test]
    fn emulated_module_has_no_coop_ops_and_validates() {
        let src = source();
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
        let full = [src.as_str(), shaders::NUMERIC.text].join("\n");
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
                .any(|e| e.name == spec(split).entry));
        }
    }
}
