//! The condition language of `[[rule]]` lives in the contract layer
//! ([`crate::component::cond`]) because write interlocks (`interlock` on a
//! writable tag of any device) use the same conditions. Re-exported here.

pub use crate::component::cond::*;
