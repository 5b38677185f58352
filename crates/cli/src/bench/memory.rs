//! Host memory of this process from `/proc/self/status`: `RssAnon` (heap and
//! other anonymous pages: what loading costs beyond the page cache) and
//! `VmHWM` (peak resident set, file-backed pages included). The kernel keeps
//! no peak of `RssAnon`, so a sampler thread polls it while the model loads.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// A `kB` field of a `/proc/<pid>/status` text, in bytes.
pub fn status_field(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        let kb: u64 = rest.trim().strip_suffix("kB")?.trim().parse().ok()?;
        Some(kb * 1024)
    })
}

fn read_status() -> Option<String> {
    std::fs::read_to_string("/proc/self/status").ok()
}

/// A field of this process's status now (`None` off Linux).
pub fn current(key: &str) -> Option<u64> {
    status_field(&read_status()?, key)
}

/// Polls `RssAnon` every millisecond until stopped; the largest value seen.
pub struct PeakSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    handle: Option<JoinHandle<()>>,
}

impl PeakSampler {
    pub fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(current("RssAnon").unwrap_or(0)));
        let (s, p) = (stop.clone(), peak.clone());
        let handle = std::thread::Builder::new()
            .name("rss-sampler".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    if let Some(v) = current("RssAnon") {
                        p.fetch_max(v, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
            .ok();
        Self { stop, peak, handle }
    }

    /// Stops the thread; the peak `RssAnon` in bytes (0 where unknown).
    pub fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        if let Some(v) = current("RssAnon") {
            self.peak.fetch_max(v, Ordering::Relaxed);
        }
        self.peak.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kb_fields_of_a_status_text() {
        let text = "Name:\tqwgpu\nVmHWM:\t  204800 kB\nRssAnon:\t    1024 kB\nThreads:\t4\n";
        assert_eq!(status_field(text, "RssAnon"), Some(1024 * 1024));
        assert_eq!(status_field(text, "VmHWM"), Some(204_800 * 1024));
        assert_eq!(status_field(text, "Threads"), None, "no kB unit");
        assert_eq!(status_field(text, "RssFile"), None);
    }

    #[test]
    fn sampler_sees_at_least_the_current_value() {
        let s = PeakSampler::start();
        let peak = s.finish();
        if cfg!(target_os = "linux") {
            assert!(peak > 0);
        }
    }
}
