//! Faults, with the real server process: a client that never reads cannot
//! grow the server's memory, and ten SIGKILLs in a row under a load of sends
//! and acknowledgements lose nothing, never move a cursor back, and leave
//! the audit chain intact.

use std::collections::HashMap;

use serde_json::{Value, json};
use wardline_protocol::{MessageId, audit};
use wardline_tests::ServerProcess;
use wardline_tests::ws::{Pair, WsClient, WsUser};

/// The stated bound: a client that never reads may cost the server at most
/// this much beyond what the same flood costs with nobody reading (its
/// queue is capped at 4 MiB, a catch-up page at about 1 MiB plus up to 32
/// messages read from the store, the socket write buffer at 2 MiB).
const EXTRA_LIMIT: u64 = 24 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_cannot_grow_server_memory() {
    let root = tempfile::tempdir().expect("temp dir");
    let server = ServerProcess::start(&root.path().join("data"));
    let url = server.url.clone();
    let Pair {
        mut alice,
        bob,
        conv,
        devices,
        ..
    } = Pair::open(&url, &server.bootstrap_code(), "flood").await;
    let text = "x".repeat(100_000);
    let mut n = 0u64;
    let mut flood = async |alice: &mut WsUser| {
        for _ in 0..300 {
            n += 1;
            let env = alice.seal(
                &conv,
                &devices,
                &text,
                MessageId::generate_v7(1_800_000_000_000 + n, [3; 10]),
            );
            alice.client.ok("send", json!({"envelope": env})).await;
        }
    };
    // Warm up with Bob offline: the store's cache and the allocator settle.
    flood(&mut alice).await;
    // The same flood again, Bob still offline: what a flood costs anyway.
    let start = server.rss_bytes();
    flood(&mut alice).await;
    let offline = server.rss_bytes().saturating_sub(start);
    // Bob comes online and never reads: his backlog and everything new pile
    // up against him until the server gives up on him. Unbounded, that would
    // hold all 42 MB of frames sent to him.
    let mut bob_conn = WsClient::connect(&url).await;
    bob_conn.send("resume", json!({"token": bob.token})).await;
    let start = server.rss_bytes();
    flood(&mut alice).await;
    let online = server.rss_bytes().saturating_sub(start);
    assert!(
        online < offline + EXTRA_LIMIT,
        "a client that never reads cost the server {} MiB beyond the flood's own {} MiB",
        online.saturating_sub(offline) / (1024 * 1024),
        offline / (1024 * 1024)
    );
    drop(bob_conn);
}

const KILLS: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_sigkills_under_load_lose_nothing_and_never_move_a_cursor_back() {
    let root = tempfile::tempdir().expect("temp dir");
    let data = root.path().join("data");
    let mut server = ServerProcess::start(&data);
    let url = server.url.clone();
    let mut admin = WsUser::enrol(&url, &server.bootstrap_code()).await;
    let sender = admin.create_and_enrol(&url, "sender").await;
    let reader = admin.create_and_enrol(&url, "reader").await;
    let mut s = WsClient::connect(&url).await;
    s.ok("resume", json!({"token": sender.token})).await;
    let conv = s
        .ok(
            "conversation_create",
            json!({"members": [reader.user_id], "title": "crash loop"}),
        )
        .await;
    let conv = conv["conv_id"].as_str().expect("id").to_string();
    let devices = s
        .ok(
            "devices",
            json!({"user_ids": [sender.user_id, reader.user_id]}),
        )
        .await;
    let (admin_token, sender_token, reader_token) = (
        admin.token.clone(),
        sender.token.clone(),
        reader.token.clone(),
    );

    let mut acked_sends: HashMap<String, u64> = HashMap::new();
    let mut acked_cursor = 0u64; // highest `ack` the server answered `ok`
    let mut n = 0u64;
    drop(s);
    for round in 0..KILLS {
        let mut s = WsClient::connect(&server.url).await;
        s.ok("resume", json!({"token": sender_token})).await;
        let mut r = WsClient::connect(&server.url).await;
        let (ok, _) = r.request("resume", json!({"token": reader_token})).await;
        assert_eq!(ok["type"], "ok", "{ok}");
        // Send a burst, reading each `ok`; the reader acknowledges what it gets.
        let mut in_flight: HashMap<u64, Value> = HashMap::new();
        for _ in 0..8 {
            n += 1;
            let env = sender.seal(
                &conv,
                &devices,
                &format!("round {round} message {n}"),
                MessageId::generate_v7(1_800_000_000_000 + n, [7; 10]),
            );
            let id = s.send("send", json!({"envelope": env.clone()})).await;
            in_flight.insert(id, env);
        }
        let mut got_oks = 0;
        while got_oks < 6 {
            let f = s.next().await.expect("sender connection open");
            if let Some(re) = f["re"].as_u64() {
                let env = in_flight.remove(&re).expect("known request");
                assert_eq!(f["type"], "ok", "{f}");
                acked_sends.insert(
                    env["msg_id"].as_str().expect("id").into(),
                    f["seq"].as_u64().expect("seq"),
                );
                got_oks += 1;
            }
        }
        // The reader takes what has arrived and acknowledges it.
        let mut highest = 0;
        let mut ack_id = None;
        while ack_id.is_none() {
            let f = r.next().await.expect("reader connection open");
            if f["type"] == "message" {
                let seq = f["seq"].as_u64().expect("seq");
                assert!(
                    seq > acked_cursor,
                    "round {round}: seq {seq} was acknowledged before (cursor {acked_cursor}) and came again"
                );
                highest = highest.max(seq);
                if highest >= acked_cursor + 3 {
                    ack_id = Some(
                        r.send("ack", json!({"conv_id": conv, "seq": highest}))
                            .await,
                    );
                }
            }
        }
        loop {
            let f = r.next().await.expect("reader connection open");
            if f["re"].as_u64() == ack_id {
                assert_eq!(f["type"], "ok", "{f}");
                acked_cursor = highest;
                break;
            }
        }
        // Kill with sends still in flight, and restart.
        server.kill();
        server = ServerProcess::start(&data);
        // Retry what was never answered, with the same msg_id.
        let mut s = WsClient::connect(&server.url).await;
        s.ok("resume", json!({"token": sender_token})).await;
        for env in in_flight.into_values() {
            let r = s.ok("send", json!({"envelope": env})).await;
            acked_sends.insert(
                env["msg_id"].as_str().expect("id").into(),
                r["seq"].as_u64().expect("seq"),
            );
        }
    }
    let url = server.url.clone();

    // Every acknowledged message is stored exactly once, in order, gap-free.
    let mut r = WsClient::connect(&url).await;
    r.ok("resume", json!({"token": reader_token})).await;
    let page = r
        .ok("history", json!({"conv_id": conv, "limit": 500}))
        .await;
    let stored: Vec<(u64, String)> = page["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| {
            (
                m["seq"].as_u64().expect("seq"),
                m["envelope"]["msg_id"].as_str().expect("id").to_string(),
            )
        })
        .collect();
    let seqs: Vec<u64> = stored.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "seq has gaps"
    );
    let by_id: HashMap<&str, u64> = stored.iter().map(|(s, id)| (id.as_str(), *s)).collect();
    assert_eq!(by_id.len(), stored.len(), "a msg_id is stored twice");
    for (id, seq) in &acked_sends {
        assert_eq!(
            by_id.get(id.as_str()),
            Some(seq),
            "acknowledged {id} lost or moved"
        );
    }
    // The audit chain survived every crash.
    let mut a = WsClient::connect(&url).await;
    a.ok("resume", json!({"token": admin_token})).await;
    let log = a.ok("admin_audit", json!({"limit": 1000})).await;
    let entries: Vec<audit::AuditEntry> =
        serde_json::from_value(log["entries"].clone()).expect("entries");
    assert!(
        entries
            .iter()
            .filter(|e| e.kind == "server_started")
            .count()
            > KILLS
    );
    audit::verify_chain(&entries, &audit::genesis()).expect("audit chain verifies");
}
