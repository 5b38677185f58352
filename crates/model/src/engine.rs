//! The backend-neutral API the CLI, the golden checks and tests use: load a
//! model on the GPU or the CPU reference, run sessions, sample, and snapshot /
//! restore / fork a session's state.
//!
//! ```no_run
//! use qwgpu_model::engine::{Backend, LoadOptions, Model, SamplingParams};
//! let model = Model::load(std::path::Path::new("tests/fixtures/dense-bf16-text"), &LoadOptions::default())?;
//! println!("running on {}", model.backend_name());
//! let mut session = model.new_session()?;
//! let greedy = SamplingParams::GREEDY;
//! let mut next = model.sample_next(&mut session, &[1, 2, 3], &greedy)?; // prefill + sample
//! let saved = model.snapshot(&session)?;
//! for _ in 0..4 {
//!     next = model.sample_next(&mut session, &[next], &greedy)?; // one decode step each
//! }
//! let mut other = model.new_session()?;
//! model.restore(&mut other, &saved)?; // continues from after the prompt
//! let last_row = model.forward(&mut other, &[next])?; // [1 × vocab] logits
//! # let _ = (Backend::Auto, last_row);
//! # Ok::<(), qwgpu_model::ModelError>(())
//! ```

use std::path::Path;
use std::sync::Arc;

use qwgpu_checkpoint::{Checkpoint, OpenOptions, TextConfig};
use qwgpu_kernels::{GpuContext, KernelError};
use qwgpu_loader::PackedModel;

pub use qwgpu_kernels::ContextOptions;
pub use qwgpu_ops::sampling::SamplingParams;

use crate::sampling::{host_step, TokenLog};
pub use crate::sampling::{Sampled, StepControls, TokenMaskFn, MAX_TOP_LOGPROBS};

pub use crate::gpu::{FamilyTime, DEFAULT_MAX_CHUNK, ONE_SESSION_MAX_CHUNK};
use crate::gpu::{GpuModel, GpuSession, GpuSnapshot};
use crate::reference::{Cache, ReferenceModel};
use crate::ModelError;

/// Where the forward pass runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// The best GPU adapter; the CPU reference only when no adapter exists.
    #[default]
    Auto,
    Gpu,
    /// The f32 CPU reference (exact, slow).
    Cpu,
}

/// How to load a model.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub backend: Backend,
    /// GPU device options (adapter name or index, feature switches).
    pub gpu: ContextOptions,
    /// Tokens per prefill step on the GPU (each session holds a step's
    /// activations: [`DEFAULT_MAX_CHUNK`] for many sessions,
    /// [`ONE_SESSION_MAX_CHUNK`] for one at a time; shortened where the
    /// device's buffer limits need it).
    pub max_chunk: usize,
    /// Refuse checkpoints with tensors qwgpu does not know.
    pub strict: bool,
    /// GPU memory the weights may take (bytes); `None`: no budget beyond the
    /// device's own limits (wgpu does not report a device's memory size).
    pub gpu_memory_budget: Option<u64>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            backend: Backend::Auto,
            gpu: ContextOptions {
                precision: crate::DEFAULT_PRECISION,
                ..Default::default()
            },
            max_chunk: DEFAULT_MAX_CHUNK,
            strict: false,
            gpu_memory_budget: None,
        }
    }
}

/// The two backends. A model and the sessions and snapshots it makes are of
/// one backend; [`Model::pair`] is the one place that matches a model with a
/// session, so every other method sees only matching pairs.
enum Imp {
    Cpu(Box<ReferenceModel>),
    Gpu(Box<GpuModel>),
}

impl Imp {
    fn name(&self) -> &'static str {
        match self {
            Imp::Cpu(_) => "CPU reference",
            Imp::Gpu(_) => "GPU",
        }
    }
}

/// A loaded model on one backend.
pub struct Model {
    imp: Imp,
    times: Option<LoadTimes>,
}

/// Where a GPU load's time went ([`Model::load_times`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadTimes {
    /// Opening the adapter and device.
    pub device_s: f64,
    /// Streaming the checkpoint's weights onto the device (copies finished).
    pub weights_s: f64,
    /// Of `weights_s`: the loading thread copying checkpoint bytes into
    /// staging (with its helper threads), and blocked on the GPU's copies
    /// out of staging (a slot it needed, then the last copies).
    pub host_copy_s: f64,
    pub gpu_wait_s: f64,
    /// Of `weights_s`: submitting filled staging slots and mapping slots
    /// again (waits left out), creating the weights' buffers, and finding
    /// each weight's source tensors with the read-ahead asked of the kernel.
    /// The rest is the loader's walk (planning, checks, repacking) and the
    /// small vectors' uploads.
    pub slots_s: f64,
    pub buffers_s: f64,
    pub sources_s: f64,
}

/// A sequence on the CPU reference: its cache, its sampler's seed and
/// counter, and the tokens its penalties count.
#[derive(Clone)]
struct CpuSession {
    cache: Cache,
    seed: u64,
    counter: u32,
    log: TokenLog,
}

enum SessionImp {
    Cpu(CpuSession),
    Gpu(Box<GpuSession>),
}

impl SessionImp {
    fn name(&self) -> &'static str {
        match self {
            SessionImp::Cpu(_) => "CPU reference",
            SessionImp::Gpu(_) => "GPU",
        }
    }
}

/// One sequence's state (KV caches, GDN states, position, sampler counter).
pub struct Session {
    imp: SessionImp,
}

enum SnapshotImp {
    Cpu(CpuSession),
    Gpu(GpuSnapshot),
}

/// A copy of a session's state at one position.
pub struct Snapshot {
    imp: SnapshotImp,
}

/// A model and a session of the same backend.
enum Pair<'a> {
    Cpu(&'a ReferenceModel, &'a mut CpuSession),
    Gpu(&'a GpuModel, &'a mut GpuSession),
}

impl Session {
    /// Tokens processed so far.
    pub fn position(&self) -> usize {
        match &self.imp {
            SessionImp::Cpu(c) => c.cache.position(),
            SessionImp::Gpu(s) => s.position(),
        }
    }

    /// Seeds the session's sampler (and restarts its counter). This starts a
    /// new generation: the presence and frequency penalties count the tokens
    /// sampled from here on (the repetition penalty also counts every token
    /// the session consumed, prompt included). Seeding needs no model, so no
    /// backend can be mismatched.
    pub fn set_seed(&mut self, seed: u64) {
        match &mut self.imp {
            SessionImp::Cpu(c) => {
                c.seed = seed;
                c.counter = 0;
                c.log.generated.clear();
                c.log.generation += 1;
            }
            SessionImp::Gpu(g) => g.set_seed(seed),
        }
    }
}

impl Snapshot {
    pub fn position(&self) -> usize {
        match &self.imp {
            SnapshotImp::Cpu(c) => c.cache.position(),
            SnapshotImp::Gpu(s) => s.position(),
        }
    }
}

impl Model {
    /// Opens the checkpoint in `dir`, packs it and puts it on the chosen backend.
    pub fn load(dir: &Path, opts: &LoadOptions) -> Result<Self, ModelError> {
        Self::load_with_progress(dir, opts, &mut |_, _| {})
    }

    /// [`Model::load`] reporting `(bytes uploaded, total bytes)` as weights land on the GPU.
    pub fn load_with_progress(
        dir: &Path,
        opts: &LoadOptions,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Self, ModelError> {
        let ckpt = Checkpoint::open_with(
            dir,
            &OpenOptions {
                strict: opts.strict,
            },
        )?;
        let opened = crate::stopwatch::Stopwatch::start();
        match Self::open_gpu(opts)? {
            Some(ctx) => {
                let device_s = opened.seconds();
                let streamed = crate::stopwatch::Stopwatch::start();
                // Header sizes only: the total the progress bar counts towards.
                let total: u64 = ckpt
                    .names()
                    .iter()
                    .filter_map(|n| ckpt.get(n))
                    .map(|t| t.bytes.len() as u64)
                    .sum();
                if let Some(budget) = opts.gpu_memory_budget {
                    if total > budget {
                        return Err(KernelError::Capacity {
                            what: format!("the weights of {}", dir.display()),
                            bytes: total,
                            limit_name: "GPU memory budget",
                            limit: budget,
                        }
                        .into());
                    }
                }
                let mut done = 0u64;
                let model = GpuModel::load_streaming(ctx, &ckpt, opts.max_chunk, &mut |b| {
                    done += b;
                    progress(done.min(total), total);
                })?;
                let weights_s = streamed.seconds();
                let st = model.staging_stats();
                Ok(Self {
                    imp: Imp::Gpu(Box::new(model)),
                    times: Some(LoadTimes {
                        device_s,
                        weights_s,
                        host_copy_s: st.fill_s,
                        gpu_wait_s: st.wait_s,
                        slots_s: st.slots_s,
                        buffers_s: st.buffers_s,
                        sources_s: st.sources_s,
                    }),
                })
            }
            None => {
                ReferenceModel::check_fits(&ckpt)?;
                let packed = qwgpu_loader::load_model(&ckpt)?;
                Ok(Self {
                    imp: Imp::Cpu(Box::new(ReferenceModel::from_packed(&packed)?)),
                    times: None,
                })
            }
        }
    }

    /// Builds the model from already packed weights.
    pub fn from_packed(packed: &PackedModel, opts: &LoadOptions) -> Result<Self, ModelError> {
        match Self::open_gpu(opts)? {
            Some(ctx) => Self::gpu_from_packed(ctx, packed, opts, &mut |_, _| {}),
            None => Ok(Self {
                imp: Imp::Cpu(Box::new(ReferenceModel::from_packed(packed)?)),
                times: None,
            }),
        }
    }

    /// The GPU context for `opts`, or `None` for the CPU backend (Auto without an adapter).
    fn open_gpu(opts: &LoadOptions) -> Result<Option<Arc<GpuContext>>, ModelError> {
        match opts.backend {
            Backend::Cpu => Ok(None),
            Backend::Gpu => Ok(Some(Arc::new(GpuContext::new(&opts.gpu)?))),
            Backend::Auto => match GpuContext::new(&opts.gpu) {
                Ok(ctx) => Ok(Some(Arc::new(ctx))),
                Err(KernelError::NoAdapter { detail }) => {
                    tracing::warn!("no GPU adapter ({detail}): using the CPU reference backend");
                    Ok(None)
                }
                Err(e) => Err(e.into()),
            },
        }
    }

    fn gpu_from_packed(
        ctx: Arc<GpuContext>,
        packed: &PackedModel,
        opts: &LoadOptions,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Self, ModelError> {
        let total: u64 = packed.weights().iter().map(|w| w.data.len() as u64).sum();
        let mut done = 0u64;
        let model = GpuModel::from_packed(ctx, packed, opts.max_chunk, &mut |b| {
            done += b;
            progress(done, total);
        })?;
        Ok(Self {
            imp: Imp::Gpu(Box::new(model)),
            times: None,
        })
    }

    pub fn config(&self) -> &TextConfig {
        match &self.imp {
            Imp::Cpu(m) => m.config(),
            Imp::Gpu(m) => m.config(),
        }
    }

    /// `gpu: NVIDIA H100 (Vulkan)`, `gpu: llvmpipe (Vulkan, software)` or `cpu reference`.
    pub fn backend_name(&self) -> String {
        match &self.imp {
            Imp::Cpu(_) => "cpu reference".into(),
            Imp::Gpu(m) => format!("gpu: {}", m.context().describe()),
        }
    }

    /// How long [`Model::load`] spent opening the device and streaming the
    /// weights; `None` on the CPU backend and for models built from packed
    /// weights.
    ///
    /// ```no_run
    /// # use qwgpu_model::engine::{LoadOptions, Model};
    /// let model = Model::load("model-dir".as_ref(), &LoadOptions::default())?;
    /// if let Some(t) = model.load_times() {
    ///     println!("device {:.2} s, weights {:.2} s", t.device_s, t.weights_s);
    /// }
    /// # Ok::<(), qwgpu_model::ModelError>(())
    /// ```
    pub fn load_times(&self) -> Option<LoadTimes> {
        self.times
    }

    /// True on the GPU backend.
    pub fn is_gpu(&self) -> bool {
        matches!(self.imp, Imp::Gpu(_))
    }

    /// The GPU context (GPU backend only), e.g. to destroy the device in tests.
    pub fn gpu_context(&self) -> Option<&GpuContext> {
        match &self.imp {
            Imp::Gpu(m) => Some(m.context()),
            Imp::Cpu(_) => None,
        }
    }

    /// An empty session.
    pub fn new_session(&self) -> Result<Session, ModelError> {
        Ok(Session {
            imp: match &self.imp {
                Imp::Cpu(m) => SessionImp::Cpu(CpuSession {
                    cache: m.new_cache(),
                    seed: 0,
                    counter: 0,
                    log: TokenLog::default(),
                }),
                Imp::Gpu(m) => SessionImp::Gpu(Box::new(m.new_session()?)),
            },
        })
    }

    /// This model with `s`, or [`ModelError::WrongBackend`] when the session
    /// is of the other backend.
    fn pair<'a>(&'a self, s: &'a mut Session) -> Result<Pair<'a>, ModelError> {
        match (&self.imp, &mut s.imp) {
            (Imp::Cpu(m), SessionImp::Cpu(c)) => Ok(Pair::Cpu(m, c)),
            (Imp::Gpu(m), SessionImp::Gpu(g)) => Ok(Pair::Gpu(m, g)),
            (m, s) => Err(ModelError::WrongBackend {
                model: m.name(),
                session: s.name(),
            }),
        }
    }

    /// Runs `tokens` after the session's state and returns the logits of every
    /// token, `[T × vocab]` (what the golden checks compare).
    pub fn forward_all(&self, s: &mut Session, tokens: &[u32]) -> Result<Vec<f32>, ModelError> {
        match self.pair(s)? {
            Pair::Cpu(m, c) => {
                let out = m.forward(&mut c.cache, tokens)?;
                c.log.consumed.extend_from_slice(tokens);
                Ok(out)
            }
            Pair::Gpu(m, g) => m.forward(g, tokens, true),
        }
    }

    /// Runs `tokens` and returns the last token's logits, `[vocab]`.
    pub fn forward(&self, s: &mut Session, tokens: &[u32]) -> Result<Vec<f32>, ModelError> {
        match self.pair(s)? {
            // The LM head only for the last position.
            Pair::Cpu(m, c) => {
                let out = m.forward_last(&mut c.cache, tokens)?;
                c.log.consumed.extend_from_slice(tokens);
                Ok(out)
            }
            Pair::Gpu(m, g) => m.forward(g, tokens, false),
        }
    }

    /// Runs `tokens` (a prompt, or the last sampled token) and samples the next
    /// one: on the GPU the pick happens on the device and one id is read back.
    /// Both backends use the same rule and random numbers
    /// ([`qwgpu_ops::sampling::sample`] with the session's seed and counter).
    /// Logits with a NaN or +inf (or all -inf) are
    /// [`ModelError::NonFiniteLogits`], never a token. Penalties in `params`
    /// count the session's tokens (see [`Session::set_seed`]).
    pub fn sample_next(
        &self,
        s: &mut Session,
        tokens: &[u32],
        params: &SamplingParams,
    ) -> Result<u32, ModelError> {
        Ok(self
            .sample_step(s, tokens, params, StepControls::none())?
            .token)
    }

    /// [`Model::sample_next`] with per-step controls: an allowed-token mask
    /// (its callback runs after the step's forward pass is submitted, while
    /// the GPU computes it: see [`StepControls`]) and log-probabilities of the
    /// raw logits, computed on the device (only the requested numbers are
    /// read back). The rules: [`qwgpu_ops::sampling::controls`]. A failing
    /// mask callback or an empty mask fails the step after the forward pass
    /// (the session has consumed `tokens`).
    ///
    /// ```no_run
    /// # use qwgpu_model::engine::{Model, LoadOptions, SamplingParams, StepControls};
    /// # let model = Model::load(std::path::Path::new("m"), &LoadOptions::default())?;
    /// let mut s = model.new_session()?;
    /// let params = SamplingParams { temperature: 0.8, presence_penalty: 0.5, ..SamplingParams::GREEDY };
    /// let controls = StepControls {
    ///     top_logprobs: Some(3),
    ///     // Computed while the GPU runs the step: only tokens 10..20 allowed.
    ///     mask: Some(Box::new(|words: &mut [u32]| {
    ///         words[0] = 0x000f_fc00;
    ///         Ok(true)
    ///     })),
    /// };
    /// let step = model.sample_step(&mut s, &[1, 2, 3], &params, controls)?;
    /// assert!((10..20).contains(&step.token));
    /// println!("{} {:?} {:?}", step.token, step.logprob, step.top);
    /// # Ok::<(), qwgpu_model::ModelError>(())
    /// ```
    pub fn sample_step(
        &self,
        s: &mut Session,
        tokens: &[u32],
        params: &SamplingParams,
        mut controls: StepControls<'_>,
    ) -> Result<Sampled, ModelError> {
        params
            .validate()
            .map_err(|detail| ModelError::Sampling { detail })?;
        controls.validate()?;
        let vocab = self.config().vocab_size;
        let after = s.position() + tokens.len();
        let out = match self.pair(s)? {
            Pair::Cpu(m, c) => {
                // Synchronous forward pass: the mask first.
                let mask = controls.fetch_mask(vocab, after)?;
                let last = m.forward_last(&mut c.cache, tokens)?;
                c.log.consumed.extend_from_slice(tokens);
                let out = host_step(
                    &last,
                    params,
                    controls.top_logprobs,
                    mask.as_deref(),
                    &c.log,
                    (c.seed, c.counter),
                    after,
                );
                c.counter = c.counter.wrapping_add(1);
                let out = out?;
                c.log.generated.push(out.token);
                out
            }
            Pair::Gpu(m, g) => m.sample_step(g, tokens, params, &mut controls)?,
        };
        Ok(out)
    }

    /// One decode step for several sessions at once (continuous batching):
    /// session `i` consumes `tokens[i]` and samples its next token with
    /// `params[i]` from its own seed and counter. Each result equals what
    /// [`Model::sample_next`] gives for that session alone (greedy: the same
    /// token; the batch changes no result). An error names the first failing
    /// session's position; sessions before it have advanced.
    ///
    /// ```no_run
    /// # use qwgpu_model::engine::{Model, LoadOptions, SamplingParams};
    /// # let model = Model::load(std::path::Path::new("m"), &LoadOptions::default()).unwrap();
    /// let greedy = SamplingParams::GREEDY;
    /// let (mut a, mut b) = (model.new_session().unwrap(), model.new_session().unwrap());
    /// let ta = model.sample_next(&mut a, &[1, 2, 3], &greedy).unwrap();
    /// let tb = model.sample_next(&mut b, &[4, 5], &greedy).unwrap();
    /// let next = model
    ///     .decode_batch(&mut [&mut a, &mut b], &[ta, tb], &[greedy, greedy])
    ///     .unwrap();
    /// assert_eq!(next.len(), 2);
    /// ```
    pub fn decode_batch(
        &self,
        sessions: &mut [&mut Session],
        tokens: &[u32],
        params: &[SamplingParams],
    ) -> Result<Vec<u32>, ModelError> {
        let controls = params.iter().map(|_| StepControls::none()).collect();
        Ok(self
            .decode_batch_with(sessions, tokens, params, controls)?
            .into_iter()
            .map(|s| s.token)
            .collect())
    }

    /// [`Model::decode_batch`] with per-row controls (`controls[i]` for
    /// session `i`: its own optional mask callback and log-probabilities;
    /// see [`StepControls`]). The callbacks run in row order after the
    /// batch's forward pass is submitted. A failing callback or an empty mask
    /// ([`ModelError::NoAllowedToken`]) fails the step after the forward
    /// pass: the sessions have consumed their tokens without a sampled one,
    /// so end those generations (as after any batch error).
    pub fn decode_batch_with(
        &self,
        sessions: &mut [&mut Session],
        tokens: &[u32],
        params: &[SamplingParams],
        mut controls: Vec<StepControls<'_>>,
    ) -> Result<Vec<Sampled>, ModelError> {
        let (n, nt, np, nc) = (sessions.len(), tokens.len(), params.len(), controls.len());
        if nt != n || np != n || nc != n {
            return Err(ModelError::InvalidArgument {
                detail: format!(
                    "decode_batch: {n} sessions, {nt} tokens, {np} sampling parameters, {nc} controls (one each)"
                ),
            });
        }
        for (p, c) in params.iter().zip(&controls) {
            p.validate()
                .map_err(|detail| ModelError::Sampling { detail })?;
            c.validate()?;
        }
        let Imp::Gpu(m) = &self.imp else {
            // The CPU reference has nothing to share between sessions.
            let mut out = Vec::with_capacity(sessions.len());
            for (((s, &t), p), c) in sessions.iter_mut().zip(tokens).zip(params).zip(controls) {
                out.push(self.sample_step(s, &[t], p, c)?);
            }
            return Ok(out);
        };
        let mut gpu: Vec<&mut GpuSession> = Vec::with_capacity(sessions.len());
        for s in sessions.iter_mut() {
            match &mut s.imp {
                SessionImp::Gpu(g) => gpu.push(g),
                other => {
                    return Err(ModelError::WrongBackend {
                        model: self.imp.name(),
                        session: other.name(),
                    })
                }
            }
        }
        let out = m.decode_batch_with(&mut gpu, tokens, params, &mut controls)?;
        for (s, t) in sessions.iter().zip(&out) {
            if t.token == qwgpu_ops::sampling::NON_FINITE {
                return Err(ModelError::NonFiniteLogits {
                    position: s.position(),
                });
            }
        }
        Ok(out)
    }

    /// GPU time per kernel family of one step over `tokens` (GPU backend with
    /// timestamp queries; `None` on the CPU backend). Advances the session.
    pub fn profile(
        &self,
        s: &mut Session,
        tokens: &[u32],
    ) -> Result<Option<Vec<FamilyTime>>, ModelError> {
        match self.pair(s)? {
            Pair::Gpu(m, g) => m.profile(g, tokens).map(Some),
            Pair::Cpu(..) => Ok(None),
        }
    }

    /// Seeds the session's sampler (and restarts its counter): the same as
    /// [`Session::set_seed`], for a session of either backend.
    pub fn set_seed(&self, s: &mut Session, seed: u64) {
        s.set_seed(seed);
    }

    /// Copies the session's state.
    pub fn snapshot(&self, s: &Session) -> Result<Snapshot, ModelError> {
        let imp = match (&self.imp, &s.imp) {
            (Imp::Cpu(_), SessionImp::Cpu(c)) => SnapshotImp::Cpu(c.clone()),
            (Imp::Gpu(m), SessionImp::Gpu(g)) => SnapshotImp::Gpu(m.snapshot(g)?),
            (m, s) => {
                return Err(ModelError::WrongBackend {
                    model: m.name(),
                    session: s.name(),
                })
            }
        };
        Ok(Snapshot { imp })
    }

    /// Replaces the session's state by the snapshot's.
    pub fn restore(&self, s: &mut Session, snap: &Snapshot) -> Result<(), ModelError> {
        match (self.pair(s)?, &snap.imp) {
            (Pair::Cpu(_, c), SnapshotImp::Cpu(saved)) => {
                *c = saved.clone();
                Ok(())
            }
            (Pair::Gpu(m, g), SnapshotImp::Gpu(saved)) => m.restore(g, saved),
            (Pair::Cpu(..), SnapshotImp::Gpu(_)) => Err(ModelError::WrongBackend {
                model: "CPU reference",
                session: "GPU",
            }),
            (Pair::Gpu(..), SnapshotImp::Cpu(_)) => Err(ModelError::WrongBackend {
                model: "GPU",
                session: "CPU reference",
            }),
        }
    }

    /// A new session with a copy of `s`'s state.
    pub fn fork(&self, s: &Session) -> Result<Session, ModelError> {
        let snap = self.snapshot(s)?;
        let mut f = self.new_session()?;
        self.restore(&mut f, &snap)?;
        Ok(f)
    }
}

/// Short name of the adapter the GPU backend would pick (`llvmpipe`, `NVIDIA H100 …`),
/// or `None` when there is none.
pub fn gpu_adapter_name() -> Option<String> {
    qwgpu_kernels::list_adapters().into_iter().next().map(|a| {
        let short: String = a
            .name
            .split(" (")
            .next()
            .unwrap_or(&a.name)
            .chars()
            .take(14)
            .collect();
        short
    })
}
