//! Seconds since a start, for load statistics. `std::time::Instant` panics
//! on `wasm32-unknown-unknown` (a page has no such clock): there a stopwatch
//! reads 0, so the statistics say nothing rather than the load failing.

#[derive(Debug, Clone, Copy)]
pub(crate) struct Stopwatch {
    #[cfg(not(target_arch = "wasm32"))]
    started: std::time::Instant,
}

impl Stopwatch {
    pub fn start() -> Self {
        Self {
            #[cfg(not(target_arch = "wasm32"))]
            started: std::time::Instant::now(),
        }
    }

    /// Seconds since [`Stopwatch::start`] (0 on wasm32).
    pub fn seconds(&self) -> f64 {
        #[cfg(not(target_arch = "wasm32"))]
        return self.started.elapsed().as_secs_f64();
        #[cfg(target_arch = "wasm32")]
        return 0.0;
    }
}
