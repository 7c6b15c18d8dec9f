//! What only these tests use; everything shared with the simulator's tests
//! and the benchmarks is in the test kit (`crates/testkit`).

pub mod contract;
pub mod source;

use tillsync_testkit::binary::Binary;

/// The binary Cargo built for these tests.
pub fn tillsync() -> Binary {
    Binary::at(env!("CARGO_BIN_EXE_tillsync"))
}
