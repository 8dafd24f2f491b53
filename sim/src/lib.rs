//! fjord-sim: the deterministic simulator that drives fjord-core's state machines with a
//! seeded network, disk and clock. (The simulator issue builds it out.)

pub use fjord_core;
