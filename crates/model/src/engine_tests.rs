//! The backend pairing of [`crate::engine`]: a session or snapshot of the
//! other backend is a typed error, and seeding needs no model.

use crate::engine::{Backend, LoadOptions, Model, SamplingParams};
use crate::testing::{random_packed_model, tiny_config};
use crate::ModelError;

fn models() -> (Model, Model) {
    let packed = random_packed_model(&tiny_config(false), false, 11);
    let opts = |backend| LoadOptions {
        backend,
        ..Default::default()
    };
    let gpu = Model::from_packed(&packed, &opts(Backend::Gpu)).expect("gpu model");
    let cpu = Model::from_packed(&packed, &opts(Backend::Cpu)).expect("cpu model");
    assert!(gpu.is_gpu() && !cpu.is_gpu());
    // In the coverage table (column `full`; on hardware it must have what ships).
    let ctx = gpu.gpu_context().expect("a GPU model has a context");
    assert!(qwgpu_kernels::testing::require_model("full", ctx));
    (gpu, cpu)
}

fn wrong_backend(r: Result<impl std::fmt::Debug, ModelError>, what: &str) {
    match r {
        Err(ModelError::WrongBackend { model, session }) => assert_ne!(model, session, "{what}"),
        other => panic!("{what}: expected WrongBackend, got {other:?}"),
    }
}

#[test]
fn a_session_or_snapshot_of_the_other_backend_is_a_wrong_backend_error() {
    let (gpu, cpu) = models();
    let (mut g, mut c) = (gpu.new_session().unwrap(), cpu.new_session().unwrap());
    let greedy = SamplingParams {
        temperature: 0.0,
        top_k: 0,
        top_p: 1.0,
        ..SamplingParams::GREEDY
    };
    wrong_backend(cpu.forward(&mut g, &[1]), "cpu.forward(gpu session)");
    wrong_backend(
        gpu.forward_all(&mut c, &[1]),
        "gpu.forward_all(cpu session)",
    );
    wrong_backend(gpu.sample_next(&mut c, &[1], &greedy), "sample_next");
    wrong_backend(cpu.profile(&mut g, &[1]), "profile");
    wrong_backend(cpu.snapshot(&g).map(|_| ()), "snapshot");
    wrong_backend(
        gpu.decode_batch(&mut [&mut c], &[1], &[greedy]),
        "decode_batch",
    );
    let gpu_snap = gpu.snapshot(&g).unwrap();
    let cpu_snap = cpu.snapshot(&c).unwrap();
    wrong_backend(gpu.restore(&mut g, &cpu_snap), "restore(cpu snapshot)");
    wrong_backend(cpu.restore(&mut c, &gpu_snap), "restore(gpu snapshot)");
    assert_eq!((g.position(), c.position()), (0, 0));
}

/// Seeding is the session's alone: the seed lands whichever model is asked
/// (it was silently dropped for a session of the other backend).
#[test]
fn set_seed_reaches_the_session_whatever_model_is_asked() {
    let (gpu, cpu) = models();
    let hot = SamplingParams {
        temperature: 1.5,
        top_k: 0,
        top_p: 1.0,
        ..SamplingParams::GREEDY
    };
    let run = |seed_with: &Model, seed: Option<u64>| {
        let mut s = gpu.new_session().unwrap();
        if let Some(seed) = seed {
            seed_with.set_seed(&mut s, seed);
        }
        let mut toks = vec![gpu.sample_next(&mut s, &[1, 2, 3], &hot).unwrap()];
        for _ in 0..12 {
            let t = *toks.last().unwrap();
            toks.push(gpu.sample_next(&mut s, &[t], &hot).unwrap());
        }
        toks
    };
    let seeded = run(&gpu, Some(5));
    assert_ne!(seeded, run(&gpu, None), "seed 5 and seed 0 sample alike");
    assert_eq!(run(&cpu, Some(5)), seeded);
}
