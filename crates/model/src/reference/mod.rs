//! (model helper fills this)
