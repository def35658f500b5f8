//! Durability under a crash: a real server process takes a continuous stream
//! of sends from several clients, is killed with SIGKILL mid-stream, and is
//! restarted on the same data directory. Every acknowledged message must be
//! there exactly once, `seq` must have no gaps, and a recipient that resumes
//! must receive everything.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;

use serde_json::{Value, json};
use wardline_protocol::{DeviceId, Envelope, MessageId, envelope};
use wardline_tests::ServerProcess;
use wardline_tests::ws::{WsClient, WsUser};

const SENDERS: usize = 3;
const WINDOW: usize = 4;

type Acked = Arc<Mutex<Vec<(String, u64)>>>;

/// Sends envelopes with up to WINDOW in flight until the connection dies.
/// Records every acknowledged (msg_id, seq), adding a permit to `progress`
/// for each; returns the sender's token and the envelopes left unanswered.
async fn stream(
    mut sender: WsUser,
    conv: String,
    devices: Value,
    acked: Acked,
    progress: Arc<Semaphore>,
    start_tag: u8,
) -> (String, Vec<Value>) {
    let mut in_flight: HashMap<u64, Value> = HashMap::new();
    let mut n: u64 = 0;
    loop {
        while in_flight.len() < WINDOW {
            n += 1;
            let msg_id = MessageId::generate_v7(1_800_000_000_000 + n, [start_tag; 10]);
            let env = sender.seal(
                &conv,
                &devices,
                &format!("message {n} from {start_tag}"),
                msg_id,
            );
            let id = sender
                .client
                .send("send", json!({"envelope": env.clone()}))
                .await;
            in_flight.insert(id, env);
        }
        let Some(f) = sender.client.next().await else {
            return (sender.token, in_flight.into_values().collect());
        };
        if let Some(re) = f["re"].as_u64() {
            let env = in_flight.remove(&re).expect("reply to a request in flight");
            assert_eq!(f["type"], "ok", "send refused: {f}");
            acked.lock().expect("lock").push((
                env["msg_id"].as_str().expect("id").to_string(),
                f["seq"].as_u64().expect("seq"),
            ));
            progress.add_permits(1);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_message_survives_sigkill_exactly_once() {
    let root = tempfile::tempdir().expect("temp dir");
    let data = root.path().join("data");
    let mut server = ServerProcess::start(&data);
    let url = server.url.clone();

    let mut admin = WsUser::enrol(&url, &server.bootstrap_code()).await;
    let recipient = admin.create_and_enrol(&url, "reader").await;
    let mut convs = Vec::new();
    let mut senders = Vec::new();
    for i in 0..SENDERS {
        let mut s = admin.create_and_enrol(&url, &format!("sender{i}")).await;
        let conv = s
            .client
            .ok(
                "conversation_create",
                json!({"members": [recipient.user_id], "title": format!("stream {i}")}),
            )
            .await;
        let conv = conv["conv_id"].as_str().expect("id").to_string();
        let devices = s
            .client
            .ok(
                "devices",
                json!({"user_ids": [s.user_id, recipient.user_id]}),
            )
            .await;
        convs.push((conv.clone(), devices.clone()));
        senders.push((s, conv, devices));
    }
    let recipient_keys = recipient.keys;
    let recipient_device = DeviceId::parse(recipient.device_id.as_str()).expect("id");
    let recipient_token = recipient.token.clone();
    drop(recipient.client); // offline: everything queues for it
    let sender_keys: Vec<_> = senders
        .iter()
        .map(|(s, _, _)| s.keys.public().sig_pk)
        .collect();

    let acked: Acked = Arc::default();
    let progress = Arc::new(Semaphore::new(0));
    let mut tasks = Vec::new();
    for (i, (s, conv, devices)) in senders.into_iter().enumerate() {
        tasks.push(tokio::spawn(stream(
            s,
            conv,
            devices,
            acked.clone(),
            progress.clone(),
            i as u8 + 1,
        )));
    }
    // Let the stream run until 150 sends have been acknowledged, then kill
    // the server mid-stream (sends are still in flight).
    let permits = tokio::time::timeout(Duration::from_secs(120), progress.acquire_many(150))
        .await
        .expect("150 sends acknowledged within 120 s")
        .expect("semaphore open");
    permits.forget();
    server.kill();
    let mut retries = Vec::new();
    for t in tasks {
        retries.push(t.await.expect("sender task"));
    }
    let mut acked: Vec<(String, u64)> = acked.lock().expect("lock").clone();
    assert!(acked.len() >= 150);

    // Restart on the same data directory.
    let server = ServerProcess::start(&data);
    let url = server.url.clone();

    // Senders resume and retry what was never answered, with the same msg_id:
    // each is stored at most once, whether or not it landed before the crash.
    for (token, unanswered) in retries {
        let mut c = WsClient::connect(&url).await;
        c.ok("resume", json!({"token": token})).await;
        for env in unanswered {
            let r = c.ok("send", json!({"envelope": env})).await;
            acked.push((
                env["msg_id"].as_str().expect("id").to_string(),
                r["seq"].as_u64().expect("seq"),
            ));
        }
    }

    // The recipient resumes and receives the backlog of every conversation.
    let mut c = WsClient::connect(&url).await;
    c.ok("resume", json!({"token": recipient_token})).await;
    let (list, backlog) = c.request("conversations", json!({})).await;
    let mut by_conv: BTreeMap<String, Vec<(u64, String)>> = BTreeMap::new();
    for p in &backlog {
        assert_eq!(p["type"], "message", "{p}");
        let env: Envelope = serde_json::from_value(p["envelope"].clone()).expect("envelope");
        let idx = convs
            .iter()
            .position(|(c, _)| c == p["conv_id"].as_str().expect("conv"))
            .expect("known conv");
        // Every delivered message still opens: nothing was corrupted.
        envelope::open(&env, &recipient_device, &recipient_keys, &sender_keys[idx]).expect("opens");
        by_conv
            .entry(p["conv_id"].as_str().expect("conv").to_string())
            .or_default()
            .push((p["seq"].as_u64().expect("seq"), env.msg_id.to_text()));
    }
    let mut stored: HashMap<String, u64> = HashMap::new();
    for info in list["conversations"].as_array().expect("list") {
        let conv = info["conv_id"].as_str().expect("conv");
        let last = info["last_seq"].as_u64().expect("seq");
        let got = by_conv.get(conv).cloned().unwrap_or_default();
        let seqs: Vec<u64> = got.iter().map(|(s, _)| *s).collect();
        assert_eq!(
            seqs,
            (1..=last).collect::<Vec<_>>(),
            "conversation {conv}: seq has gaps or duplicates"
        );
        for (seq, id) in got {
            assert!(
                stored.insert(id.clone(), seq).is_none(),
                "msg_id {id} stored twice"
            );
        }
    }
    for (id, seq) in &acked {
        assert_eq!(
            stored.get(id),
            Some(seq),
            "acknowledged message {id} (seq {seq}) was lost or moved"
        );
    }
}
