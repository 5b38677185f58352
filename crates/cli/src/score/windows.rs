//! Sliding windows over a long input: each window gives the model at most
//! `window` tokens, the next one starts `stride` tokens later, and each
//! token is scored once, in the first window that holds it with context
//! before it (as in HF transformers' perplexity guide). The first token has
//! no context and is not scored.

/// Tokens `begin..end - 1` go through the model (at most the window's
/// length); the targets from `first` on are scored, each predicted from the
/// tokens before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub begin: usize,
    pub first: usize,
    pub end: usize,
}

/// The windows over `n` tokens (`window` >= 2, 1 <= `stride` <= `window`).
pub fn plan(n: usize, window: usize, stride: usize) -> Vec<Window> {
    let mut out = Vec::new();
    let mut scored_to = 1;
    let mut begin = 0;
    loop {
        let end = (begin + window).min(n);
        if scored_to < end {
            out.push(Window {
                // With stride = window, the window's first token is predicted
                // from the one before it: start one token earlier.
                begin: begin.min(scored_to - 1),
                first: scored_to,
                end,
            });
            scored_to = end;
        }
        if end >= n {
            return out;
        }
        begin += stride;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_token_but_the_first_is_scored_once_within_its_window() {
        for (n, window, stride) in [
            (2, 2, 1),
            (10, 4, 2),
            (10, 4, 4),
            (11, 4, 3),
            (5, 8, 4),
            (20, 6, 1),
        ] {
            let windows = plan(n, window, stride);
            let mut scored = vec![0; n];
            for w in &windows {
                assert!(
                    w.begin < w.first && w.first < w.end && w.end - 1 - w.begin <= window,
                    "{w:?}"
                );
                for s in &mut scored[w.first..w.end] {
                    *s += 1;
                }
            }
            assert_eq!(scored[0], 0);
            assert!(
                scored[1..].iter().all(|&s| s == 1),
                "{n} {window} {stride}: {windows:?}"
            );
        }
        assert_eq!(
            plan(10, 4, 2),
            vec![
                Window {
                    begin: 0,
                    first: 1,
                    end: 4
                },
                Window {
                    begin: 2,
                    first: 4,
                    end: 6
                },
                Window {
                    begin: 4,
                    first: 6,
                    end: 8
                },
                Window {
                    begin: 6,
                    first: 8,
                    end: 10
                },
            ]
        );
    }
}
