//! `wardline-load`: see `wardline-load --help` and docs/PERFORMANCE.md.

use anyhow::Context as _;
use clap::Parser as _;
use wardline_bench::cli::{Cli, Scenario};
use wardline_bench::scenarios::{chat, group, idle, storm};
use wardline_bench::{hold, relay};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Tens of thousands of sockets need more than the usual soft limit of
    // 1,024 open files; children (the server, the workers) inherit it.
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("warning: cannot raise the open-file limit: {e}");
    }
    let result = match cli.scenario {
        Scenario::Relay { listen, threads } => relay::run(listen, threads),
        other => runtime().and_then(|rt| rt.block_on(run(other))),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

async fn run(scenario: Scenario) -> anyhow::Result<()> {
    match scenario {
        Scenario::Chat {
            common,
            traffic,
            pairs,
            half_rate_check,
        } => chat::run(&common, &traffic, pairs, half_rate_check).await,
        Scenario::Group {
            common,
            traffic,
            members,
            groups,
            senders,
        } => group::run(&common, &traffic, members, groups, senders).await,
        Scenario::Idle {
            common,
            connections,
            hold: hold_secs,
            workers,
            connect_concurrency,
        } => {
            let args = idle::IdleArgs {
                connections,
                hold: idle::hold_secs(&common, hold_secs)?,
                workers: workers.unwrap_or(0),
                concurrency: connect_concurrency,
            };
            idle::run(&common, args).await
        }
        Scenario::Storm {
            common,
            devices,
            messages,
            members,
            senders,
            window,
            connect_concurrency,
            drain_timeout,
        } => {
            let args = storm::StormArgs {
                devices,
                messages,
                members,
                senders,
                window,
                concurrency: connect_concurrency,
                drain_timeout: wardline_bench::scenarios::secs("drain-timeout", drain_timeout)?,
            };
            storm::run(&common, args).await
        }
        Scenario::IdleWorker => hold::worker_main().await,
        Scenario::Relay { .. } => unreachable!("handled before the runtime starts"),
    }
}
