// Per-call values shared by every launch of one model step (written by the host
// before each submit, so decode launches are recorded once and reused).
struct Step {
    // Absolute position of this call's first token (= tokens already cached).
    pos: u32,
    // Tokens in this call.
    n_tokens: u32,
    // Sampling seed (64 bits) and this step's counter: the random number of a
    // sampling step is a pure function of (seed, counter).
    seed_lo: u32,
    seed_hi: u32,
    counter: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}
