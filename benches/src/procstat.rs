//! CPU time and memory of a local process, read from `/proc`.
//!
//! `utime + stime` in `/proc/PID/stat` includes threads that have already
//! exited (Argon2's blocking threads, the writer), which per-thread
//! counters would miss. Clock ticks are converted with `getconf CLK_TCK`,
//! asked once, because `sysconf` needs `unsafe` and this crate forbids it.

use std::sync::OnceLock;

/// One reading of a process.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    /// User + system CPU seconds since the process started.
    pub cpu_s: f64,
    /// Resident set size now, bytes.
    pub rss_bytes: u64,
    /// Peak resident set size (VmHWM), bytes.
    pub hwm_bytes: u64,
}

fn clock_ticks() -> f64 {
    static TCK: OnceLock<f64> = OnceLock::new();
    *TCK.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            // Linux has used 100 on every mainstream architecture for decades.
            .unwrap_or(100.0)
    })
}

/// CPU seconds from the text of `/proc/PID/stat`.
pub fn cpu_from_stat(stat: &str) -> Option<f64> {
    // The command name is in parentheses and may hold spaces: split after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3 overall, utime 14 and stime 15.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

/// A `kB` field of `/proc/PID/status`, in bytes.
pub fn status_kb(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let v = l.strip_prefix(key)?.strip_prefix(':')?;
        let kb: u64 = v.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kb * 1024)
    })
}

/// Reads process `pid` (`"self"` for this one); `None` once it has gone.
pub fn sample(pid: &str) -> Option<Sample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(Sample {
        cpu_s: cpu_from_stat(&stat)?,
        rss_bytes: status_kb(&status, "VmRSS")?,
        hwm_bytes: status_kb(&status, "VmHWM").unwrap_or(0),
    })
}

/// Busy CPU seconds of the whole machine (all cores) since boot, from the
/// first line of `/proc/stat`: what other processes used is this minus the
/// server's and the harness's.
pub fn machine_busy_s() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return 0.0;
    };
    let Some(line) = stat.lines().next() else {
        return 0.0;
    };
    // cpu user nice system idle iowait irq softirq steal ...
    let f: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let busy: f64 = [0usize, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|i| f.get(*i))
        .sum();
    busy / clock_ticks()
}

/// A process whose usage the harness reports.
#[derive(Debug, Clone)]
pub struct Watched {
    pid: String,
}

impl Watched {
    /// Process `pid`.
    pub fn pid(pid: u32) -> Self {
        Self {
            pid: pid.to_string(),
        }
    }

    /// This process.
    pub fn this_process() -> Self {
        Self { pid: "self".into() }
    }

    /// A reading now; zeros once the process has gone.
    pub fn sample(&self) -> Sample {
        sample(&self.pid).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_even_with_spaces_in_the_name() {
        let stat =
            "42 (tokio runtime) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 1000 100 10";
        let cpu = cpu_from_stat(stat).expect("parses");
        assert!((cpu - 300.0 / clock_ticks()).abs() < 1e-9);
    }

    #[test]
    fn reads_kb_fields() {
        let status = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(status_kb(status, "VmRSS"), Some(1024 * 1024));
        assert_eq!(status_kb(status, "VmHWM"), Some(2048 * 1024));
        assert_eq!(status_kb(status, "VmSwap"), None);
    }

    #[test]
    fn samples_this_process() {
        let s = Watched::this_process().sample();
        assert!(s.rss_bytes > 0);
    }
}
