//! A data directory that fills up: sends fail with `internal` and a clear
//! log line, nothing acknowledged is lost or corrupted, and after space
//! returns and the server restarts, sending goes on where it stopped. Runs on
//! a small tmpfs of its own (needs root, as CI and the project's machines
//! have).

use std::process::Command;

use serde_json::json;
use wardline_protocol::MessageId;
use wardline_tests::ServerProcess;
use wardline_tests::ws::WsUser;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_sends_cleanly_and_recovers_when_space_returns() {
    let root = tempfile::tempdir().expect("temp dir");
    let mnt = root.path().join("small");
    let _fs = Tmpfs::mount(&mnt, "24m");
    let data = mnt.join("data");
    let server = ServerProcess::start(&data);
    let url = server.url.clone();
    let mut admin = WsUser::enrol(&url, &server.bootstrap_code()).await;
    let mut alice = admin.create_and_enrol(&url, "alice").await;
    let bob = admin.create_and_enrol(&url, "bob").await;
    let conv = alice
        .client
        .ok(
            "conversation_create",
            json!({"members": [bob.user_id], "title": "t"}),
        )
        .await;
    let conv = conv["conv_id"].as_str().expect("id").to_string();
    let devices = alice
        .client
        .ok("devices", json!({"user_ids": [alice.user_id, bob.user_id]}))
        .await;

    // Fill the disk: a filler file we can delete later, then messages.
    let filler = mnt.join("filler");
    let free = fs_free(&mnt);
    std::fs::write(
        &filler,
        vec![0u8; (free as usize).saturating_sub(3 * 1024 * 1024)],
    )
    .expect("filler");
    let text = "y".repeat(50_000);
    let mut acked = Vec::new();
    let mut failure = None;
    for n in 0..200u64 {
        let env = alice.seal(
            &conv,
            &devices,
            &text,
            MessageId::generate_v7(1_800_000_000_000 + n, [5; 10]),
        );
        let (r, _) = alice.client.request("send", json!({"envelope": env})).await;
        if r["type"] == "ok" {
            acked.push(r["seq"].as_u64().expect("seq"));
        } else {
            failure = Some(r);
            break;
        }
    }
    let failure = failure.expect("the disk filled up");
    assert_eq!(failure["code"], "internal", "{failure}");

    // sled stops serving after a write error, so the server is restarted
    // once space returns (OPERATIONS.md): nothing acknowledged is lost and
    // sequence numbers go on without a gap or a reuse.
    std::fs::remove_file(&filler).expect("free space");
    let mut server = server;
    server.kill();
    let server = ServerProcess::start(&data);
    let url = server.url.clone();
    let mut reader = wardline_tests::ws::WsClient::connect(&url).await;
    reader.ok("resume", json!({"token": bob.token})).await;
    let newest = |page: &serde_json::Value| {
        page["messages"]
            .as_array()
            .and_then(|m| m.last())
            .map(|m| m["seq"].as_u64().expect("seq"))
    };
    let page = reader.ok("history", json!({"conv_id": conv})).await;
    let last = newest(&page).expect("messages");
    assert!(
        last >= *acked.last().expect("some acked"),
        "acknowledged messages were lost"
    );
    let mut sender = wardline_tests::ws::WsClient::connect(&url).await;
    sender.ok("resume", json!({"token": alice.token})).await;
    let env = alice.seal(
        &conv,
        &devices,
        "after the disk was freed",
        MessageId::generate_v7(1_900_000_000_000, [6; 10]),
    );
    let r = sender.ok("send", json!({"envelope": env})).await;
    assert_eq!(r["seq"].as_u64(), Some(last + 1), "no seq lost or reused");
    drop(bob);
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
