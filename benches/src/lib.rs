//! Benches and load generator: see issue "Load harness"; nothing here yet.
