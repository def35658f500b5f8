//! Settings shared by the criterion benches.

use std::time::Duration;

use criterion::Criterion;

/// Short runs: the reference machine is two shared cores.
pub fn short(measure_secs: u64) -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(measure_secs))
}
