//! A data directory that fills up or turns read-only: sends fail with
//! `internal` and a clear log line, reads keep working, nothing acknowledged
//! is lost or corrupted, and once it takes writes again the server resumes
//! them by itself, with no restart. Runs on a small tmpfs of its own (needs
//! root, as CI and the project's machines have).

use std::process::Command;

use serde_json::json;
use std::time::{Duration, Instant};
use wardline_protocol::MessageId;
use wardline_tests::ServerProcess;

use wardline_tests::ws::{Pair, WsClient, WsUser};

struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path, size: &str) -> Self {
        std::fs::create_dir_all(dir).expect("mount point");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(
            ok.success(),
            "this test mounts a small tmpfs and needs root"
        );
        Self(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// The disk's free space (MiB) below which the server under test refuses
/// writes.
const MIN_FREE_MB: u64 = 4;
const MIB: u64 = 1024 * 1024;

/// A conversation between alice and bob on a server over `data`.
struct Ward {
    server: ServerProcess,
    admin_token: String,
    alice: WsUser,
    bob: WsUser,
    conv: String,
    devices: serde_json::Value,
}

impl Ward {
    async fn open(data: &std::path::Path, flags: &[&str]) -> Self {
        let server = ServerProcess::start_with(data, flags);
        let p = Pair::open(&server.url, &server.bootstrap_code(), "t").await;
        Self {
            server,
            admin_token: p.admin.token.clone(),
            alice: p.alice,
            bob: p.bob,
            conv: p.conv,
            devices: p.devices,
        }
    }

    /// Sends one message; the reply frame.
    async fn send(&mut self, text: &str, n: u64) -> serde_json::Value {
        let env = self.alice.seal(
            &self.conv,
            &self.devices,
            text,
            MessageId::generate_v7(1_800_000_000_000 + n, [5; 10]),
        );
        let (r, _) = self
            .alice
            .client
            .request("send", json!({"envelope": env}))
            .await;
        r
    }

    /// Sends 50 KB messages until one fails; the acknowledged `seq`s and the
    /// failure.
    async fn send_until_refused(&mut self) -> (Vec<u64>, serde_json::Value) {
        let text = "y".repeat(50_000);
        let mut acked = Vec::new();
        for n in 0..400 {
            let r = self.send(&text, n).await;
            if r["type"] == "ok" {
                acked.push(r["seq"].as_u64().expect("seq"));
            } else {
                return (acked, r);
            }
        }
        panic!("the disk never filled up");
    }

    /// After a crash and restart: every message is there exactly once, in
    /// order, up to `last`, and the audit chain verifies.
    async fn check_intact_after_restart(self, data: &std::path::Path, flags: &[&str], last: u64) {
        let mut server = self.server;
        server.kill();
        let server = ServerProcess::start_with(data, flags);
        let mut reader = WsClient::connect(&server.url).await;
        reader.ok("resume", json!({"token": self.bob.token})).await;
        assert_eq!(
            all_seqs(&mut reader, &self.conv).await,
            (1..=last).collect::<Vec<_>>(),
            "every message once, in order"
        );
        let mut admin = WsClient::connect(&server.url).await;
        admin.ok("resume", json!({"token": self.admin_token})).await;
        let audit = admin.ok("admin_audit", json!({"limit": 1000})).await;
        let entries: Vec<wardline_protocol::audit::AuditEntry> =
            serde_json::from_value(audit["entries"].clone()).expect("audit entries");
        assert!(entries.len() > 5, "the audit log has the test's events");
        let start = audit["chain_start"].as_str().expect("chain start");
        wardline_protocol::audit::verify_chain(&entries, start).expect("the audit chain verifies");
    }
}

/// Every `seq` of a conversation, paging back through its history (pages
/// are bounded in bytes as well as in count).
async fn all_seqs(client: &mut WsClient, conv: &str) -> Vec<u64> {
    let mut out = Vec::new();
    let mut before: Option<u64> = None;
    loop {
        let page = client
            .ok("history", json!({"conv_id": conv, "before_seq": before}))
            .await;
        let got = seqs(&page);
        let Some(&first) = got.first() else { break };
        out.splice(0..0, got);
        if first <= 1 {
            break;
        }
        before = Some(first);
    }
    out
}

fn seqs(page: &serde_json::Value) -> Vec<u64> {
    page["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["seq"].as_u64().expect("seq"))
        .collect()
}

/// Fills the disk until `left` bytes remain, with a file that can be removed.
fn fill(mnt: &std::path::Path, left: u64) -> std::path::PathBuf {
    let filler = mnt.join("filler");
    let free = fs_free(mnt);
    std::fs::write(&filler, vec![0u8; free.saturating_sub(left) as usize]).expect("filler");
    filler
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nearly_full_disk_refuses_sends_keeps_reads_and_recovers_by_itself() {
    let root = tempfile::tempdir().expect("temp dir");
    let mnt = root.path().join("small");
    let _fs = Tmpfs::mount(&mnt, "24m");
    let data = mnt.join("data");
    let min_free = MIN_FREE_MB.to_string();
    let flags = ["--min-free-mb", min_free.as_str()];
    let mut w = Ward::open(&data, &flags).await;

    let filler = fill(&mnt, (MIN_FREE_MB + 3) * MIB);
    let (acked, failure) = w.send_until_refused().await;
    assert_eq!(failure["code"], "internal", "{failure}");
    let last_acked = *acked.last().expect("some sends were acknowledged");
    assert!(
        fs_free(&mnt) > MIB,
        "the server stopped writing before the disk was full"
    );

    // While the disk is nearly full: sends keep failing cleanly, the
    // operators' health check says why, and reads go on, on a connection
    // that was open and on a new one.
    let r = w.send("while full", 1000).await;
    assert_eq!(r["code"], "internal", "{r}");
    let (status, body) = w.server.healthz();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("nearly full"), "{body}");
    let page = w.bob.client.ok("history", json!({"conv_id": w.conv})).await;
    assert_eq!(seqs(&page).last(), Some(&last_acked));
    let mut reader = WsClient::connect(&w.server.url).await;
    reader.ok("resume", json!({"token": w.bob.token})).await;
    let page = reader.ok("history", json!({"conv_id": w.conv})).await;
    assert_eq!(
        seqs(&page).last(),
        Some(&last_acked),
        "acknowledged messages are there, and nothing that was refused"
    );
    // The small writes that keep the service safe go on in the room kept:
    // acknowledgements, and administration (which revocation and wipes are).
    w.bob
        .client
        .ok("ack", json!({"conv_id": w.conv, "seq": last_acked}))
        .await;
    let mut admin = WsClient::connect(&w.server.url).await;
    admin.ok("resume", json!({"token": w.admin_token})).await;
    admin
        .ok(
            "admin_incident_mode",
            json!({"enabled": false, "reason": "disk nearly full"}),
        )
        .await;

    // Space returns: the server notices by itself, without a restart, and
    // sending goes on without a gap in or a reuse of sequence numbers.
    std::fs::remove_file(&filler).expect("free space");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = w.server.healthz();
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still refusing writes 30 s after space returned: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = w.send("after the disk was freed", 2000).await;
    assert_eq!(r["seq"].as_u64(), Some(last_acked + 1), "{r}");

    w.check_intact_after_restart(&data, &flags, last_acked + 1)
        .await;
}

/// The disk fills faster than the server looks (no watermark here): sled
/// fails a write, after which writes are refused until a restart, and
/// nothing acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_fails_on_a_full_disk_loses_nothing_acknowledged() {
    let root = tempfile::tempdir().expect("temp dir");
    let mnt = root.path().join("small");
    let _fs = Tmpfs::mount(&mnt, "24m");
    let data = mnt.join("data");
    let flags = ["--min-free-mb", "0"];
    let mut w = Ward::open(&data, &flags).await;

    let filler = fill(&mnt, 3 * MIB);
    let (acked, failure) = w.send_until_refused().await;
    assert_eq!(failure["code"], "internal", "{failure}");
    let last_acked = *acked.last().expect("some sends were acknowledged");
    let (status, body) = w.server.healthz();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("restart"), "{body}");

    std::fs::remove_file(&filler).expect("free space");
    let mut server = w.server;
    server.kill();
    let server = ServerProcess::start_with(&data, &flags);
    let mut reader = WsClient::connect(&server.url).await;
    reader.ok("resume", json!({"token": w.bob.token})).await;
    let got = all_seqs(&mut reader, &w.conv).await;
    // A send that failed may still have reached the disk; acknowledged
    // ones certainly did, once each and in order.
    assert!(
        got.len() as u64 >= last_acked,
        "acknowledged messages were lost: {got:?}, {last_acked} acknowledged"
    );
    assert_eq!(got, (1..=got.len() as u64).collect::<Vec<_>>());
    let mut sender = WsClient::connect(&server.url).await;
    sender.ok("resume", json!({"token": w.alice.token})).await;
    let env = w.alice.seal(
        &w.conv,
        &w.devices,
        "after the restart",
        MessageId::generate_v7(1_900_000_000_000, [6; 10]),
    );
    let r = sender.ok("send", json!({"envelope": env})).await;
    assert_eq!(
        r["seq"].as_u64(),
        Some(got.len() as u64 + 1),
        "no seq lost or reused"
    );
}

fn fs_free(path: &std::path::Path) -> u64 {
    let out = Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(path)
        .output()
        .expect("df");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .expect("df output")
}

/// A read-only bind mount over a directory, undone on drop.
struct ReadOnly(std::path::PathBuf);

impl ReadOnly {
    fn over(dir: &std::path::Path) -> Self {
        for args in [&["--bind"][..], &["-o", "remount,bind,ro"][..]] {
            let ok = Command::new("mount")
                .args(args)
                .arg(dir)
                .arg(dir)
                .status()
                .expect("run mount");
            assert!(ok.success(), "this test bind-mounts and needs root");
        }
        Self(dir.to_path_buf())
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// The data directory turns read-only. Linux will not remount a filesystem
/// read-only while sled holds files open for writing, so a read-only bind
/// mount over the store directory stands in for it: it is what the server
/// looks at before writing. Writes are refused, reads go on, and writes
/// resume once the directory is writable again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_data_directory_refuses_writes_keeps_reads_and_recovers() {
    let root = tempfile::tempdir().expect("temp dir");
    let data = root.path().join("data");
    let mut w = Ward::open(&data, &[]).await;
    let first = w.send("before", 0).await;
    let first = first["seq"].as_u64().expect("the first send is stored");

    let read_only = ReadOnly::over(&data.join("store"));
    let (status, body) = w.server.healthz();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("read-only"), "{body}");
    let r = w.send("while read-only", 1).await;
    assert_eq!(r["code"], "internal", "{r}");
    let mut reader = WsClient::connect(&w.server.url).await;
    reader.ok("resume", json!({"token": w.bob.token})).await;
    let page = reader.ok("history", json!({"conv_id": w.conv})).await;
    assert_eq!(
        seqs(&page),
        vec![first],
        "reads go on; nothing refused was stored"
    );

    drop(read_only);
    let (status, body) = w.server.healthz();
    assert_eq!(status, 200, "{body}");
    let r = w.send("writable again", 2).await;
    assert_eq!(r["seq"].as_u64(), Some(first + 1), "{r}");
}
