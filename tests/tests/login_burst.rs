//! A burst of logins (a shift change, or an attacker opening many
//! connections) cannot exhaust the server's memory: each Argon2 check takes
//! 19 MiB, and only a few run at once however many are asked for.

use serde_json::json;
use wardline_tests::ServerProcess;
use wardline_tests::ws::WsClient;

const MIB: u64 = 1024 * 1024;
/// Argon2id's memory per hash (the argon2 crate's default parameters).
const HASH_MIB: u64 = 19;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_logins_runs_only_a_few_password_hashes_at_once() {
    let root = tempfile::tempdir().expect("temp dir");
    let server = ServerProcess::start(&root.path().join("data"));
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) as u64;
    // The server runs at most two hashes per core; ask for many more.
    let allowed = 2 * cores;
    let burst = (8 * allowed).max(64);

    let mut clients = Vec::new();
    for _ in 0..burst {
        clients.push(WsClient::connect(&server.url).await);
    }
    let before = server.peak_rss_bytes();
    let mut tasks = tokio::task::JoinSet::new();
    for (n, mut c) in clients.into_iter().enumerate() {
        tasks.spawn(async move {
            let (r, _) = c
                .request(
                    "login",
                    json!({"username": format!("nobody{n}"), "password": "not a password", "totp": "000000", "device": {"device_id": "d-1"}}),
                )
                .await;
            r["code"].as_str().map(str::to_string)
        });
    }
    while let Some(code) = tasks.join_next().await {
        assert_eq!(
            code.expect("login task").as_deref(),
            Some("auth_failed"),
            "every login is answered"
        );
    }
    let grew = server.peak_rss_bytes().saturating_sub(before);
    // The permitted hashes, plus room for threads and buffers; without the
    // bound all `burst` hashes would run at once (64 × 19 MiB = 1.2 GiB).
    let limit = (allowed + 2) * HASH_MIB * MIB + 64 * MIB;
    assert!(
        grew < limit,
        "peak memory grew by {} MiB during {burst} concurrent logins (limit {} MiB)",
        grew / MIB,
        limit / MIB
    );
}
