//! The server's own counters from `/metrics` (Prometheus text on the admin
//! listener): how large its group commits were and how long each took,
//! which tells whether a run was bound by fsync or by CPU.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use serde::Serialize;

/// The counters the harness reads.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Scrape {
    commits: f64,
    committed: f64,
    commit_secs: f64,
    queue_drops: f64,
    rate_limited: f64,
}

/// What the server did between two scrapes.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CommitStats {
    /// Group commits.
    pub commits: u64,
    /// Mean messages per commit.
    pub mean_batch: f64,
    /// Mean time to append and fsync one batch, ms.
    pub mean_commit_ms: f64,
    /// Share of the window the writer spent committing (1.0: always busy).
    pub writer_busy: f64,
    /// Connections dropped for falling behind.
    pub queue_drops: u64,
    /// Requests refused by the rate limit.
    pub rate_limited: u64,
}

/// Reads `/metrics` from `admin_url` (`http://IP:PORT`); `None` if unreachable.
pub fn scrape(admin_url: &str) -> Option<Scrape> {
    let addr = admin_url.strip_prefix("http://")?.trim_end_matches('/');
    let mut tcp = TcpStream::connect(addr).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        tcp,
        "GET /metrics HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    tcp.read_to_string(&mut text).ok()?;
    Some(parse(&text))
}

fn parse(text: &str) -> Scrape {
    let get = |name: &str| {
        text.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(' ')?;
                (k == name).then(|| v.trim().parse::<f64>().ok()).flatten()
            })
            .unwrap_or(0.0)
    };
    Scrape {
        commits: get("wardline_commit_batch_size_count"),
        committed: get("wardline_commit_batch_size_sum"),
        commit_secs: get("wardline_commit_seconds_sum"),
        queue_drops: get("wardline_queue_drops_total"),
        rate_limited: get("wardline_rate_limited_total"),
    }
}

impl Scrape {
    /// The difference from `earlier` to `self` over a window of `secs`.
    pub fn since(&self, earlier: &Scrape, secs: f64) -> CommitStats {
        let commits = (self.commits - earlier.commits).max(0.0);
        let busy = (self.commit_secs - earlier.commit_secs).max(0.0);
        CommitStats {
            commits: commits as u64,
            mean_batch: if commits > 0.0 {
                (self.committed - earlier.committed) / commits
            } else {
                0.0
            },
            mean_commit_ms: if commits > 0.0 {
                busy * 1000.0 / commits
            } else {
                0.0
            },
            writer_busy: if secs > 0.0 { busy / secs } else { 0.0 },
            queue_drops: (self.queue_drops - earlier.queue_drops).max(0.0) as u64,
            rate_limited: (self.rate_limited - earlier.rate_limited).max(0.0) as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_commit_histogram_sums() {
        let text = "# HELP x\nwardline_commit_batch_size_sum 300\nwardline_commit_batch_size_count 10\n\
                    wardline_commit_seconds_sum 0.05\nwardline_queue_drops_total 2\n";
        let s = parse(text);
        let d = s.since(&Scrape::default(), 1.0);
        assert_eq!(d.commits, 10);
        assert!((d.mean_batch - 30.0).abs() < 1e-9);
        assert!((d.mean_commit_ms - 5.0).abs() < 1e-9);
        assert!((d.writer_busy - 0.05).abs() < 1e-9);
        assert_eq!(d.queue_drops, 2);
    }
}
