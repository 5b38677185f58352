//! Every kernel the crate launches, collected from the families' spec lists:
//! what the naga validation test (`tests/shaders_validate.rs`) and the uniform
//! layout test (`tests/uniform_layout.rs`) walk. It sits above the families
//! and nothing in the crate imports it, so it adds no import cycle.

use crate::spec::KernelSpec;
use crate::{attention, coop_peak, copy, embed, gdn, matmul, moe, norm, sample};

/// Every kernel spec of every family.
pub fn all() -> Vec<&'static KernelSpec> {
    [
        copy::SPECS,
        coop_peak::SPECS,
        norm::SPECS,
        embed::SPECS,
        matmul::SPECS,
        moe::SPECS,
        gdn::SPECS,
        attention::SPECS,
        sample::SPECS,
    ]
    .concat()
}
