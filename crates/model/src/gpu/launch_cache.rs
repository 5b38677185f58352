//! The one cache of recorded launches.
//!
//! Recording a step's launches costs CPU time (a bind group per launch, ~200
//! launches per decode step, thousands per batched one), so decode steps
//! replay lists recorded earlier. A list bakes in the buffers it binds and
//! the sampler's parameters (its position, token count, seed and counter are
//! read from the `Step` uniform at run time), so:
//!
//! **Key** ([`LaunchKey`]): the step's shape ([`StepKind`]) and, for every
//! session row of the step, the session's id (never reused), its buffer
//! epoch (bumped whenever a buffer its launches bind is replaced, e.g. a KV
//! page added and the attention scratch re-made), the number of KV pages the
//! step binds, and the row's sampling parameters (as bits) or none.
//!
//! **Rule**: a list is replayed only for an equal key; nothing is invalidated
//! by hand. A lookup that misses drops the lists whose key names one of its
//! sessions at an older epoch (they can never match again), and the least
//! recently used lists beyond [`CAPACITY`] go.
//!
//! Sessions hold a cache of their own lone decode steps (its lists bind the
//! session's buffers, so they go with the session); the model holds one for
//! batched steps. A step's command buffer encoded ahead (while the GPU runs
//! the previous step) carries the same key, and is used only if the key of
//! the step to run equals it.

use qwgpu_kernels::sample::SamplingParams;

/// Launch lists kept per cache: batches above the largest batch run as
/// alternating groups, and a session may alternate sampled and unsampled steps.
pub(crate) const CAPACITY: usize = 4;

/// What a launch list computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StepKind {
    /// One session, one token, the logits of its row (and the sampler when
    /// the row has sampling parameters).
    Decode,
    /// One token for each row's session, every row sampled.
    BatchDecode,
    /// The controlled sampler of a lone session's step (after its forward pass).
    Sample,
    /// The controlled samplers of a batched step's rows.
    BatchSample,
}

/// One session's part of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RowKey {
    pub session: u64,
    pub epoch: u64,
    /// KV pages the step binds.
    pub pages: usize,
    /// Temperature, top-k and top-p bits, when the row is sampled.
    pub sampling: Option<[u32; 3]>,
    /// A controlled sampler's parameters and switches (see `controlled`).
    pub ctl: Option<[u32; 10]>,
}

impl RowKey {
    pub fn new(session: u64, epoch: u64, pages: usize, sampling: Option<&SamplingParams>) -> Self {
        Self {
            session,
            epoch,
            pages,
            sampling: sampling.map(|p| [p.temperature.to_bits(), p.top_k, p.top_p.to_bits()]),
            ctl: None,
        }
    }
}

/// See the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LaunchKey {
    pub kind: StepKind,
    pub rows: Vec<RowKey>,
}

impl LaunchKey {
    /// Whether `newer` shows that one of this key's sessions has replaced
    /// buffers since (same session, higher epoch).
    fn superseded_by(&self, newer: &LaunchKey) -> bool {
        self.rows.iter().any(|r| {
            newer
                .rows
                .iter()
                .any(|n| n.session == r.session && n.epoch > r.epoch)
        })
    }
}

/// Recorded values (launch lists) by [`LaunchKey`], most recently used first.
pub(crate) struct LaunchCache<V> {
    entries: Vec<(LaunchKey, V)>,
}

impl<V> Default for LaunchCache<V> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
        }
    }
}

impl<V> LaunchCache<V> {
    /// The value for `key`, made by `record` on a miss (see the module docs).
    pub fn get_or_record<E>(
        &mut self,
        key: &LaunchKey,
        record: impl FnOnce() -> Result<V, E>,
    ) -> Result<&V, E> {
        match self.entries.iter().position(|(k, _)| k == key) {
            Some(i) => {
                let entry = self.entries.remove(i);
                self.entries.insert(0, entry);
            }
            None => {
                let value = record()?;
                self.entries.retain(|(k, _)| !k.superseded_by(key));
                self.entries.insert(0, (key.clone(), value));
                self.entries.truncate(CAPACITY);
            }
        }
        Ok(&self.entries[0].1)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }

    /// The most recently used value.
    #[cfg(test)]
    pub fn latest(&self) -> Option<&V> {
        self.entries.first().map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(session: u64, epoch: u64, pages: usize, p: Option<&SamplingParams>) -> LaunchKey {
        LaunchKey {
            kind: StepKind::Decode,
            rows: vec![RowKey::new(session, epoch, pages, p)],
        }
    }

    fn record(n: &mut u32) -> Result<u32, ()> {
        *n += 1;
        Ok(*n)
    }

    #[test]
    fn equal_keys_replay_and_any_difference_records() {
        let mut c = LaunchCache::default();
        let mut n = 0;
        let greedy = SamplingParams {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            ..SamplingParams::GREEDY
        };
        let hot = SamplingParams {
            temperature: 0.7,
            ..greedy
        };
        assert_eq!(
            *c.get_or_record(&key(1, 0, 1, None), || record(&mut n))
                .unwrap(),
            1
        );
        assert_eq!(
            *c.get_or_record(&key(1, 0, 1, None), || record(&mut n))
                .unwrap(),
            1
        );
        for k in [
            key(1, 0, 1, Some(&greedy)),
            key(1, 0, 1, Some(&hot)),
            key(1, 0, 2, None),
            key(2, 0, 1, None),
        ] {
            let before = n;
            assert_eq!(*c.get_or_record(&k, || record(&mut n)).unwrap(), before + 1);
        }
        let batch = LaunchKey {
            kind: StepKind::BatchDecode,
            ..key(1, 0, 1, None)
        };
        assert_eq!(*c.get_or_record(&batch, || record(&mut n)).unwrap(), 6);
        assert_eq!(c.len(), CAPACITY);
    }

    #[test]
    fn a_newer_epoch_drops_the_session_lists_it_supersedes() {
        let mut c = LaunchCache::default();
        let mut n = 0;
        c.get_or_record(&key(1, 0, 1, None), || record(&mut n))
            .unwrap();
        c.get_or_record(&key(2, 0, 1, None), || record(&mut n))
            .unwrap();
        c.get_or_record(&key(1, 1, 2, None), || record(&mut n))
            .unwrap();
        // Session 1's epoch-0 list is gone, session 2's stays.
        assert_eq!(c.len(), 2);
        assert_eq!(
            *c.get_or_record(&key(2, 0, 1, None), || record(&mut n))
                .unwrap(),
            2
        );
        assert_eq!(
            *c.get_or_record(&key(1, 0, 1, None), || record(&mut n))
                .unwrap(),
            4
        );
    }
}
