//! The live table moved to the contract layer ([`crate::component::live`]):
//! the write path (interlocks, bad-quality refusals) reads it and components
//! must not import each other. Re-exported here for its other readers.

pub use crate::component::live::*;
