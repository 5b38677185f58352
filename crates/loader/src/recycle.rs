//! Packing buffers handed back for reuse while a [`Recycling`] guard is alive.
//!
//! A streaming load packs one weight after another into a fresh `Vec` of tens
//! to hundreds of MB, and drops it once the weight is on the GPU: fresh
//! anonymous memory that the kernel faults in and zeroes page by page, most
//! of the host time of a load (perf, 0.8B). While a guard is alive on a thread,
//! a dropped [`PackedWeight`](crate::PackedWeight)'s buffer goes to that
//! thread's pool and the next pack that fits reuses it.
//!
//! ```
//! let _recycling = qwgpu_loader::Recycling::start();
//! // ... stream_model(...): each part's weights, once uploaded and dropped,
//! // lend their memory to the next part's packing.
//! ```

use std::cell::RefCell;
use std::marker::PhantomData;

/// Buffers a pool keeps (the largest ones: a layer's big projections).
const MAX_POOLED: usize = 4;
/// Smaller buffers are not worth keeping.
const MIN_POOLED: usize = 1 << 20;
/// Bytes a pool keeps at most: the host memory a load holds stays within
/// 1 GiB + the largest tensor. A 9B layer's four big projections
/// (192 + 96 + 96 + 80 MiB) fit: its load took 9.7-10.7 s on the H100 with
/// them pooled, 17.8 s with a 256 MiB pool (fresh pages for most weights).
const MAX_POOL_BYTES: usize = 512 << 20;
/// The largest buffer a pool takes: a 35B-A3B layer's stacked experts
/// (512 MiB - 1 GiB each) are not kept (with them its BF16 load peaked at
/// 2111 MiB of RssAnon, over its 1994).
const MAX_POOLED_BUFFER: usize = 256 << 20;

/// A pooled buffer: packed bytes, or a 4-bit weight's words.
enum Buf {
    Bytes(Vec<u8>),
    Words(Vec<u32>),
}

impl Buf {
    fn capacity(&self) -> usize {
        match self {
            Buf::Bytes(b) => b.capacity(),
            Buf::Words(w) => w.capacity() * 4,
        }
    }
}

thread_local! {
    static POOL: RefCell<Option<Vec<Buf>>> = const { RefCell::new(None) };
}

/// Recycles packing buffers on this thread until dropped (then frees them).
#[must_use = "recycling stops when the guard is dropped"]
pub struct Recycling {
    /// Per thread: not `Send`.
    _thread: PhantomData<*const ()>,
}

impl Recycling {
    /// Starts recycling on the current thread.
    pub fn start() -> Self {
        POOL.with(|p| *p.borrow_mut() = Some(Vec::new()));
        Self {
            _thread: PhantomData,
        }
    }
}

impl Drop for Recycling {
    fn drop(&mut self) {
        POOL.with(|p| *p.borrow_mut() = None);
    }
}

/// An empty buffer with room for `bytes`: the smallest pooled one that fits,
/// else a new one.
pub(crate) fn take(bytes: usize) -> Vec<u8> {
    match take_buf(bytes, |b| matches!(b, Buf::Bytes(_))) {
        Some(Buf::Bytes(b)) => b,
        _ => Vec::with_capacity(bytes),
    }
}

/// `len` words for a 4-bit weight's repack, every one of which the caller
/// overwrites: a pooled buffer keeps its old words (not cleared, so a reuse
/// writes the memory once), a new one is zeroed by the allocator.
pub(crate) fn take_words(len: usize) -> Vec<u32> {
    match take_buf(4 * len, |b| matches!(b, Buf::Words(_))) {
        Some(Buf::Words(mut w)) => {
            if w.len() >= len {
                w.truncate(len);
            } else {
                w.resize(len, 0);
            }
            w
        }
        _ => vec![0; len],
    }
}

/// The smallest pooled buffer of the kind `kind` accepts with room for `bytes`.
fn take_buf(bytes: usize, kind: impl Fn(&Buf) -> bool) -> Option<Buf> {
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        let pool = p.as_mut()?;
        let i = (0..pool.len())
            .filter(|&i| kind(&pool[i]) && pool[i].capacity() >= bytes)
            .min_by_key(|&i| pool[i].capacity())?;
        Some(pool.swap_remove(i))
    })
}

/// Hands `buf` to the pool when recycling is on (keeping the largest few).
pub(crate) fn give(mut buf: Vec<u8>) {
    buf.clear();
    give_buf(Buf::Bytes(buf));
}

/// Hands a 4-bit weight's words to the pool (see [`take_words`]).
pub(crate) fn give_words(words: Vec<u32>) {
    give_buf(Buf::Words(words));
}

fn give_buf(buf: Buf) {
    if !(MIN_POOLED..=MAX_POOLED_BUFFER).contains(&buf.capacity()) {
        return;
    }
    POOL.with(|p| {
        if let Some(pool) = p.borrow_mut().as_mut() {
            pool.push(buf);
            // Largest first; drop from the small end past the count or byte cap.
            pool.sort_by_key(|b| std::cmp::Reverse(b.capacity()));
            while pool.len() > MAX_POOLED
                || pool.iter().map(Buf::capacity).sum::<usize>() > MAX_POOL_BYTES
            {
                pool.pop();
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MiB of each pooled buffer, sorted; None when recycling is off.
    fn pooled() -> Option<Vec<usize>> {
        POOL.with(|p| {
            p.borrow().as_ref().map(|pool| {
                let mut v: Vec<usize> = pool.iter().map(|b| b.capacity() >> 20).collect();
                v.sort();
                v
            })
        })
    }

    #[test]
    fn buffers_are_reused_only_while_recycling() {
        give(Vec::with_capacity(4 << 20));
        assert_eq!(pooled(), None, "no guard: nothing pooled");
        let guard = Recycling::start();
        let a = Vec::<u8>::with_capacity(4 << 20);
        let ptr = a.as_ptr();
        give(a);
        give(Vec::with_capacity(16 << 10));
        assert_eq!(pooled(), Some(vec![4]), "small buffers are not kept");
        assert_eq!(take(8 << 20).capacity(), 8 << 20, "too small: a new one");
        assert_eq!(pooled(), Some(vec![4]));
        let b = take(3 << 20);
        assert_eq!(b.as_ptr(), ptr, "fits: reused");
        assert!(b.is_empty() && b.capacity() >= 3 << 20);
        assert_eq!(pooled(), Some(vec![]));
        give(b);
        drop(guard);
        assert_eq!(pooled(), None, "guard dropped: pool freed");
    }

    #[test]
    fn the_pool_stays_within_its_byte_cap() {
        let _g = Recycling::start();
        give(Vec::with_capacity(300 << 20));
        assert_eq!(
            pooled(),
            Some(vec![]),
            "larger than a pooled buffer: not kept"
        );
        give(Vec::with_capacity(250 << 20));
        give(Vec::with_capacity(200 << 20));
        give(Vec::with_capacity(100 << 20));
        assert_eq!(
            pooled(),
            Some(vec![200, 250]),
            "the smallest dropped: 512 MiB at most"
        );
    }

    #[test]
    fn words_are_reused_without_clearing_and_bytes_stay_bytes() {
        let _g = Recycling::start();
        let mut w = take_words(1 << 20);
        assert!(
            w.len() == 1 << 20 && w.iter().all(|&x| x == 0),
            "new: zeroed"
        );
        w.fill(7);
        let ptr = w.as_ptr();
        give_words(w);
        assert_eq!(
            take(1 << 20).capacity(),
            1 << 20,
            "words are not lent as bytes"
        );
        let w = take_words(3 << 18);
        assert_eq!((w.as_ptr(), w.len()), (ptr, 3 << 18), "reused, truncated");
        assert!(
            w.iter().all(|&x| x == 7),
            "not cleared: the caller overwrites"
        );
        give_words(w);
        let w = take_words(1 << 20);
        assert_eq!(w.as_ptr(), ptr, "reused again");
        assert!(w[..3 << 18].iter().all(|&x| x == 7) && w[3 << 18..].iter().all(|&x| x == 0));
    }

    #[test]
    fn the_pool_keeps_the_largest_few() {
        let _g = Recycling::start();
        for mib in 1..=6 {
            give(Vec::with_capacity(mib << 20));
        }
        assert_eq!(pooled(), Some(vec![3, 4, 5, 6]));
    }
}
