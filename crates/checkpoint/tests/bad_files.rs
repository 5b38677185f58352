//! Model folders whose files are the wrong kind of file (FIFO, device,
//! directory), too large, not JSON, or laid out in a way qwgpu must not guess
//! about: each is refused (or resolved as HF transformers does) before any
//! tensor data is read, with a message naming the file.

mod support;

use std::path::Path;

use qwgpu_checkpoint::{Checkpoint, CheckpointError};
use support::*;

fn open_err(dir: &Path) -> CheckpointError {
    match Checkpoint::open(dir) {
        Ok(_) => panic!("{} opened without error", dir.display()),
        Err(e) => e,
    }
}

#[cfg(unix)]
fn mkfifo(path: &Path) {
    let ok = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo")
        .success();
    assert!(ok, "mkfifo {}", path.display());
}

/// A FIFO or a device in place of config.json, the index or a shard is refused
/// from its metadata: opening a FIFO would block, `/dev/zero` would read forever.
#[cfg(unix)]
#[test]
fn special_files_are_refused_before_reading() {
    use std::os::unix::fs::symlink;
    // config.json is a FIFO.
    let d = tempfile::tempdir().expect("tempdir");
    write_tiny(d.path(), &Tiny::default());
    std::fs::remove_file(d.path().join("config.json")).expect("rm");
    mkfifo(&d.path().join("config.json"));
    let e = open_err(d.path());
    assert!(
        matches!(&e, CheckpointError::NotAFile { kind, .. } if kind.contains("FIFO")),
        "{e}"
    );
    assert!(e.to_string().contains("config.json"), "{e}");

    // model.safetensors links to /dev/zero.
    let d = tempfile::tempdir().expect("tempdir");
    write_config(d.path(), &Tiny::default().config());
    symlink("/dev/zero", d.path().join("model.safetensors")).expect("symlink");
    let e = open_err(d.path());
    assert!(
        e.to_string().contains("model.safetensors") && e.to_string().contains("character device"),
        "{e}"
    );

    // The index is a FIFO.
    let d = tempfile::tempdir().expect("tempdir");
    write_tiny_sharded(d.path(), &Tiny::default(), 2);
    let index = d.path().join("model.safetensors.index.json");
    std::fs::remove_file(&index).expect("rm");
    mkfifo(&index);
    let e = open_err(d.path());
    assert!(
        e.to_string().contains("index.json") && e.to_string().contains("FIFO"),
        "{e}"
    );

    // A shard is a FIFO; another is a directory: neither "does not exist".
    for make in [mkfifo as fn(&Path), |p: &Path| {
        std::fs::create_dir(p).expect("mkdir")
    }] {
        let d = tempfile::tempdir().expect("tempdir");
        let names = write_tiny_sharded(d.path(), &Tiny::default(), 2);
        let shard = d.path().join(&names[1]);
        std::fs::remove_file(&shard).expect("rm");
        make(&shard);
        let e = open_err(d.path());
        let msg = e.to_string();
        assert!(matches!(e, CheckpointError::NotAFile { .. }), "{msg}");
        assert!(
            msg.contains(&names[1]) && !msg.contains("does not exist"),
            "{msg}"
        );
    }
}

#[test]
fn a_file_given_as_the_model_folder_is_named_as_such() {
    let d = tempfile::tempdir().expect("tempdir");
    write_tiny(d.path(), &Tiny::default());
    let e = open_err(&d.path().join("model.safetensors"));
    assert!(
        e.to_string()
            .contains("is a regular file, expected a model folder"),
        "{e}"
    );
}

#[test]
fn oversized_config_is_refused_without_reading_it() {
    let d = tempfile::tempdir().expect("tempdir");
    write_tiny(d.path(), &Tiny::default());
    // Sparse: 17 MiB on paper, no blocks on disk.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(d.path().join("config.json"))
        .expect("open");
    f.set_len(17 << 20).expect("set_len");
    let e = open_err(d.path());
    assert!(
        matches!(e, CheckpointError::FileTooLarge { size, .. } if size == 17 << 20),
        "{e}"
    );
    assert!(e.to_string().contains("config.json"), "{e}");
}

#[test]
fn config_with_a_byte_order_mark_names_file_and_position() {
    let d = tempfile::tempdir().expect("tempdir");
    write_tiny(d.path(), &Tiny::default());
    let text = std::fs::read_to_string(d.path().join("config.json")).expect("read");
    std::fs::write(d.path().join("config.json"), format!("\u{feff}{text}")).expect("write");
    let e = open_err(d.path());
    let msg = e.to_string();
    assert!(
        matches!(
            e,
            CheckpointError::Json {
                line: 1,
                column: 1,
                ..
            }
        ),
        "{msg}"
    );
    assert!(
        msg.contains("config.json") && msg.contains("byte-order mark"),
        "{msg}"
    );
}

/// transformers tries `model.safetensors` before the index; so does qwgpu.
#[test]
fn single_file_wins_over_an_index_like_transformers() {
    let d = tempfile::tempdir().expect("tempdir");
    write_tiny_sharded(d.path(), &Tiny::default(), 2);
    write_with_crate(
        &d.path().join("model.safetensors"),
        &Tiny::default().tensors(),
    );
    let ckpt = Checkpoint::open(d.path()).expect("opens");
    assert_eq!(ckpt.files(), vec![d.path().join("model.safetensors")]);
}

#[test]
fn tensors_under_an_unknown_prefix_are_reported_as_such() {
    let d = tempfile::tempdir().expect("tempdir");
    write_config(d.path(), &Tiny::default().config());
    let mut tensors = Tiny::default().tensors();
    let n = tensors.len();
    for t in &mut tensors {
        t.name = t.name.replacen("model.", "transformer.", 1);
    }
    write_with_crate(&d.path().join("model.safetensors"), &tensors);
    let e = open_err(d.path());
    let msg = e.to_string();
    assert!(matches!(e, CheckpointError::UnknownPrefix { .. }), "{msg}");
    assert!(
        msg.contains(&format!(
            "{} tensor(s) under `transformer.` were not recognised",
            n - 1
        )),
        "{msg}"
    );
}

#[test]
fn missing_tensors_are_spelled_as_the_file_spells_them() {
    let d = tempfile::tempdir().expect("tempdir");
    let tiny = Tiny {
        wrapper: true,
        ..Tiny::default()
    };
    write_config(d.path(), &tiny.config());
    let tensors: Vec<RawTensor> = tiny
        .tensors()
        .into_iter()
        .filter(|t| t.name != "model.language_model.norm.weight")
        .collect();
    write_with_crate(&d.path().join("model.safetensors"), &tensors);
    let e = open_err(d.path());
    assert!(
        e.to_string()
            .contains("missing tensor(s): model.language_model.norm.weight"),
        "{e}"
    );
}

/// `transformers_weights` in config.json names the file transformers loads;
/// qwgpu loads the same one, and refuses a name outside the folder.
#[test]
fn config_named_weights_file_is_the_one_loaded() {
    let d = tempfile::tempdir().expect("tempdir");
    write_tiny(d.path(), &Tiny::default());
    std::fs::rename(
        d.path().join("model.safetensors"),
        d.path().join("weights.safetensors"),
    )
    .expect("rename");
    // A decoy at the default name that does not even parse.
    std::fs::write(
        d.path().join("model.safetensors"),
        b"not a safetensors file",
    )
    .expect("decoy");
    let mut config = Tiny::default().config();
    config["transformers_weights"] = "weights.safetensors".into();
    write_config(d.path(), &config);
    let ckpt = Checkpoint::open(d.path()).expect("opens the named file");
    assert_eq!(ckpt.files(), vec![d.path().join("weights.safetensors")]);

    config["transformers_weights"] = "../weights.safetensors".into();
    write_config(d.path(), &config);
    let e = open_err(d.path());
    assert!(
        e.to_string().contains("transformers_weights") && e.to_string().contains(".."),
        "{e}"
    );
}
