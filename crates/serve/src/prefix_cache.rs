//! Prefix cache for hybrid state. A GDN layer's state cannot be rewound, so a
//! snapshot is only reusable at exactly the position it was taken: each entry
//! covers one exact token sequence (a prompt after its prefill, or prompt +
//! reply at the end of a request). A new prompt restores the longest entry
//! that is a prefix of it, at any length (no block alignment), and prefills
//! only the rest. Entries are evicted least recently used beyond a byte budget.
//!
//! A list scanned per lookup is plenty at this scale: a lookup compares at
//! most a prompt's length of ids per entry, far cheaper than one decode step.

use qwgpu_checkpoint::{LayerType, TextConfig};

struct Entry<S> {
    ids: Vec<u32>,
    snapshot: S,
    bytes: u64,
    last_used: u64,
}

/// Snapshots keyed by the token ids they cover, bounded by bytes.
pub struct PrefixCache<S> {
    entries: Vec<Entry<S>>,
    limit: u64,
    used: u64,
    clock: u64,
}

impl<S> PrefixCache<S> {
    /// A cache of at most `limit` bytes (0: keeps nothing).
    pub fn new(limit: u64) -> Self {
        Self {
            entries: Vec::new(),
            limit,
            used: 0,
            clock: 0,
        }
    }

    pub fn bytes(&self) -> u64 {
        self.used
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The longest entry covering a prefix of `ids` of at most `max_len`
    /// tokens, marked as used; with its length.
    pub fn lookup(&mut self, ids: &[u32], max_len: usize) -> Option<(&S, usize)> {
        let best = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.ids.len() <= max_len && ids.starts_with(&e.ids))
            .max_by_key(|(_, e)| e.ids.len())
            .map(|(i, _)| i)?;
        self.clock += 1;
        let e = &mut self.entries[best];
        e.last_used = self.clock;
        Some((&e.snapshot, e.ids.len()))
    }

    /// True when an entry covers exactly `ids` (no need to snapshot again).
    pub fn contains(&self, ids: &[u32]) -> bool {
        self.entries.iter().any(|e| e.ids == ids)
    }

    /// Whether an entry of `bytes` could be kept at all.
    pub fn fits(&self, bytes: u64) -> bool {
        bytes > 0 && bytes <= self.limit
    }

    /// Keeps `snapshot` for `ids` (replacing an entry for the same ids),
    /// evicting the least recently used entries until it fits. An entry
    /// larger than the whole budget is dropped.
    pub fn insert(&mut self, ids: Vec<u32>, snapshot: S, bytes: u64) {
        if !self.fits(bytes) {
            return;
        }
        if let Some(i) = self.entries.iter().position(|e| e.ids == ids) {
            let old = self.entries.swap_remove(i);
            self.used -= old.bytes;
        }
        while self.used + bytes > self.limit {
            let Some(oldest) = (0..self.entries.len()).min_by_key(|&i| self.entries[i].last_used)
            else {
                break;
            };
            let old = self.entries.swap_remove(oldest);
            self.used -= old.bytes;
            tracing::debug!(tokens = old.ids.len(), "prefix cache: evicted");
        }
        self.clock += 1;
        self.used += bytes;
        self.entries.push(Entry {
            ids,
            snapshot,
            bytes,
            last_used: self.clock,
        });
    }
}

/// Bytes of one session's state at `position` tokens: per linear-attention
/// layer the conv window (`(kernel - 1) * conv_dim`) and the recurrent state
/// (`nv * dk * dv`), per full-attention layer K and V rows (`2 * pos * nkv *
/// hd`), all f32.
pub fn snapshot_bytes(cfg: &TextConfig, position: usize) -> u64 {
    let floats: u64 = cfg
        .layer_types
        .iter()
        .map(|t| match t {
            LayerType::LinearAttention => {
                (cfg.linear_conv_kernel_dim.saturating_sub(1) * cfg.conv_dim()
                    + cfg.linear_num_value_heads
                        * cfg.linear_key_head_dim
                        * cfg.linear_value_head_dim) as u64
            }
            LayerType::FullAttention => {
                (2 * position * cfg.num_key_value_heads * cfg.head_dim) as u64
            }
        })
        .sum();
    floats * 4
}

/// Bytes a cache entry keeps besides the state and the token ids: the
/// entry's own bookkeeping (the entry, the snapshot's headers and the
/// allocator's rounding of each).
pub const ENTRY_OVERHEAD: u64 = 1024;

/// Bytes per token of ids an entry keeps: its key (4), and the snapshot's
/// token log for the penalties (consumed and generated ids, 4 each at most).
const ID_BYTES: u64 = 12;

/// Bytes one GPU state buffer of a snapshot keeps beyond its contents:
/// wgpu's tracking of the buffer and the memory allocator's rounding. A GPU
/// snapshot holds two buffers per layer (GDN: conv window and recurrent
/// state; attention: K and V).
pub const GPU_BUFFER_OVERHEAD: u64 = 2048;

/// What a cache entry of `position` tokens really holds: the state
/// ([`snapshot_bytes`]), its ids (key and token log), and the per-entry and (on the GPU)
/// per-buffer overheads. `--cache-mem` budgets this, so the process grows
/// by what `/metrics` reports.
pub fn entry_bytes(cfg: &TextConfig, position: usize, gpu: bool) -> u64 {
    let buffers = if gpu {
        2 * cfg.layer_types.len() as u64 * GPU_BUFFER_OVERHEAD
    } else {
        0
    };
    snapshot_bytes(cfg, position) + ID_BYTES * position as u64 + ENTRY_OVERHEAD + buffers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_cached_prefix_wins_at_any_length() {
        let mut c = PrefixCache::new(1000);
        c.insert(vec![1, 2], "ab", 10);
        c.insert(vec![1, 2, 3, 4, 5], "abcde", 10);
        c.insert(vec![9], "z", 10);
        assert_eq!(c.lookup(&[1, 2, 3, 4, 5, 6], 5), Some((&"abcde", 5)));
        // The snapshot must leave at least one token to run.
        assert_eq!(c.lookup(&[1, 2, 3, 4, 5], 4), Some((&"ab", 2)));
        assert_eq!(c.lookup(&[1, 3], 5), None);
        assert!(c.contains(&[9]) && !c.contains(&[1]));
    }

    #[test]
    fn least_recently_used_entries_leave_first_within_the_budget() {
        let mut c = PrefixCache::new(30);
        c.insert(vec![1], 1, 10);
        c.insert(vec![2], 2, 10);
        c.insert(vec![3], 3, 10);
        assert!(c.lookup(&[1, 0], 5).is_some()); // 1 is now the newest
        c.insert(vec![4], 4, 10); // evicts 2
        assert!(c.contains(&[1]) && !c.contains(&[2]) && c.contains(&[4]));
        assert_eq!(c.bytes(), 30);
        c.insert(vec![5], 5, 31); // larger than the budget: not kept
        assert!(!c.contains(&[5]));
        c.insert(vec![1], 11, 5); // replaces, no double counting
        assert_eq!((c.bytes(), c.len()), (25, 3));
        let mut off = PrefixCache::new(0);
        off.insert(vec![1], 1, 1);
        assert!(off.is_empty());
    }
}
