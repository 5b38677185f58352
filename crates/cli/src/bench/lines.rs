//! The text lines `qwgpu bench` prints (without `--json`), one function each
//! so that tests can check every line's full text.

use std::path::Path;

use super::Timed;

const MIB: f64 = 1048576.0;

/// `copy kernel on <adapter>: 812.3 GB/s (read + written, 1024 MiB buffer)`.
pub(super) fn copy(adapter: &str, bytes_per_s: f64, buffer_bytes: u64) -> String {
    let gb_s = bytes_per_s / 1e9;
    let mib = buffer_bytes >> 20;
    format!("copy kernel on {adapter}: {gb_s:.1} GB/s (read + written, {mib} MiB buffer)")
}

/// `prefill    512 tokens: 0.123 s = 4162.6 tok/s`.
pub(super) fn prefill(p: &Timed) -> String {
    let (n, seconds, tok_s) = (p.tokens, p.seconds, p.tok_s());
    format!("prefill {n:>6} tokens: {seconds:.3} s = {tok_s:.1} tok/s")
}

/// `decode 128 tokens at context 512..640: 1.000 s = 128.0 tok/s`.
pub(super) fn decode(d: &Timed) -> String {
    let (tokens, from, seconds, tok_s) = (d.tokens, d.context, d.seconds, d.tok_s());
    let to = from + tokens;
    format!("decode {tokens} tokens at context {from}..{to}: {seconds:.3} s = {tok_s:.1} tok/s")
}

/// The load summary of `bench_model`.
pub(super) struct Load<'a> {
    pub dir: &'a Path,
    pub backend: &'a str,
    pub load_s: f64,
    pub ckpt_bytes: u64,
    pub peak_rss_anon: u64,
    pub vm_hwm: u64,
    /// The GPU load's split: device open, weights streamed.
    pub times: Option<qwgpu_model::engine::LoadTimes>,
}

impl Load<'_> {
    pub fn line(&self) -> String {
        let dir = self.dir.display();
        let backend = self.backend;
        let load_s = self.load_s;
        let gb_s = self.ckpt_bytes as f64 / load_s.max(1e-9) / 1e9;
        let gb = self.ckpt_bytes as f64 / 1e9;
        let rss_mib = self.peak_rss_anon as f64 / MIB;
        let hwm_mib = self.vm_hwm as f64 / MIB;
        let split = self.times.map_or_else(String::new, |t| {
            let (device_s, weights_s) = (t.device_s, t.weights_s);
            let (copy_s, wait_s) = (t.host_copy_s, t.gpu_wait_s);
            let (slots_s, buffers_s, sources_s) = (t.slots_s, t.buffers_s, t.sources_s);
            let w_gb_s = self.ckpt_bytes as f64 / weights_s.max(1e-9) / 1e9;
            format!(
                " (device open {device_s:.2} s, weights {weights_s:.2} s = {w_gb_s:.2} GB/s: \
                 host copies {copy_s:.2} s, waits for GPU copies {wait_s:.2} s, \
                 slot submits and maps {slots_s:.2} s, buffer creation {buffers_s:.2} s, \
                 source lookups and read-ahead {sources_s:.2} s)"
            )
        });
        format!(
            "model {dir} on {backend}: load {load_s:.2} s ({gb_s:.2} GB/s of {gb:.2} GB safetensors){split}; peak RssAnon {rss_mib:.1} MiB, VmHWM {hwm_mib:.1} MiB"
        )
    }
}

/// `batched decode   8 sessions × 128 steps: 2.000 s = 512.0 tok/s total, 64.0 tok/s per session`.
pub(super) fn batched(sessions: usize, steps: usize, seconds: f64) -> String {
    let tok_s = (sessions * steps) as f64 / seconds.max(1e-9);
    let per_session = tok_s / sessions as f64;
    format!(
        "batched decode {sessions:>3} sessions × {steps} steps: {seconds:.3} s = {tok_s:.1} tok/s total, {per_session:.1} tok/s per session"
    )
}

/// `ttft  32768 tokens: 14.210 s (fresh session: prefill + first sampled token)`.
pub(super) fn ttft(tokens: usize, seconds: f64) -> String {
    format!(
        "ttft {tokens:>6} tokens: {seconds:.3} s (fresh session: prefill + first sampled token)"
    )
}

/// A `--ttft` length that failed.
pub(super) fn ttft_error(tokens: usize, error: &str) -> String {
    format!("ttft {tokens:>6} tokens: error: {error}")
}

/// `sessions  16 × 128 steps after 512-token prompts: 2.000 s = 1024.0 tok/s total, 64.0 tok/s per session`.
pub(super) fn sessions(sessions: usize, prompt: usize, steps: usize, seconds: f64) -> String {
    let tok_s = (sessions * steps) as f64 / seconds.max(1e-9);
    let per_session = tok_s / sessions.max(1) as f64;
    format!(
        "sessions {sessions:>3} × {steps} steps after {prompt}-token prompts: {seconds:.3} s = {tok_s:.1} tok/s total, {per_session:.1} tok/s per session"
    )
}

/// A `--sessions` count that failed.
pub(super) fn sessions_error(sessions: usize, error: &str) -> String {
    format!("sessions {sessions:>3}: error: {error}")
}

/// `decode step GPU time 1.500 ms (launches timed one per pass)`.
pub(super) fn profile_header(what: &str, total_ns: f64) -> String {
    let ms = total_ns / 1e6;
    format!("{what} GPU time {ms:.3} ms (launches timed one per pass)")
}

/// One kernel family's row of `--profile`.
pub(super) fn profile_row(label: &str, ns: f64, total_ns: f64, launches: usize) -> String {
    let ms = ns / 1e6;
    let percent = 100.0 * ns / total_ns.max(1.0);
    format!("  {label:<20} {ms:>9.3} ms {percent:>5.1}% {launches:>4} launches")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bench_line() {
        assert_eq!(
            copy("NVIDIA H100", 2.5e12, 1 << 30),
            "copy kernel on NVIDIA H100: 2500.0 GB/s (read + written, 1024 MiB buffer)"
        );
        let p = Timed {
            tokens: 512,
            context: 0,
            seconds: 0.25,
        };
        assert_eq!(prefill(&p), "prefill    512 tokens: 0.250 s = 2048.0 tok/s");
        let d = Timed {
            tokens: 128,
            context: 512,
            seconds: 2.0,
        };
        assert_eq!(
            decode(&d),
            "decode 128 tokens at context 512..640: 2.000 s = 64.0 tok/s"
        );
        let load = Load {
            dir: Path::new("/m/q"),
            backend: "cpu reference",
            load_s: 2.0,
            ckpt_bytes: 3_000_000_000,
            peak_rss_anon: 512 << 20,
            vm_hwm: 3 << 19,
            times: None,
        };
        assert_eq!(
            load.line(),
            "model /m/q on cpu reference: load 2.00 s (1.50 GB/s of 3.00 GB safetensors); peak RssAnon 512.0 MiB, VmHWM 1.5 MiB"
        );
        let gpu = Load {
            backend: "gpu: H100",
            times: Some(qwgpu_model::engine::LoadTimes {
                device_s: 0.5,
                weights_s: 1.5,
                host_copy_s: 1.0,
                gpu_wait_s: 0.25,
                slots_s: 0.05,
                buffers_s: 0.1,
                sources_s: 0.02,
            }),
            ..load
        };
        assert_eq!(
            gpu.line(),
            "model /m/q on gpu: H100: load 2.00 s (1.50 GB/s of 3.00 GB safetensors) (device open 0.50 s, weights 1.50 s = 2.00 GB/s: host copies 1.00 s, waits for GPU copies 0.25 s, slot submits and maps 0.05 s, buffer creation 0.10 s, source lookups and read-ahead 0.02 s); peak RssAnon 512.0 MiB, VmHWM 1.5 MiB"
        );
        assert_eq!(
            batched(8, 128, 2.0),
            "batched decode   8 sessions × 128 steps: 2.000 s = 512.0 tok/s total, 64.0 tok/s per session"
        );
        assert_eq!(
            ttft(32768, 14.21),
            "ttft  32768 tokens: 14.210 s (fresh session: prefill + first sampled token)"
        );
        assert_eq!(
            ttft_error(4096, "out of memory"),
            "ttft   4096 tokens: error: out of memory"
        );
        assert_eq!(
            sessions(16, 512, 128, 2.0),
            "sessions  16 × 128 steps after 512-token prompts: 2.000 s = 1024.0 tok/s total, 64.0 tok/s per session"
        );
        assert_eq!(
            sessions_error(32, "device lost"),
            "sessions  32: error: device lost"
        );
        assert_eq!(
            profile_header("decode step", 1_500_000.0),
            "decode step GPU time 1.500 ms (launches timed one per pass)"
        );
        assert_eq!(
            profile_row("gemv", 750_000.0, 1_500_000.0, 12),
            "  gemv                     0.750 ms  50.0%   12 launches"
        );
    }
}
