//! Benchmark helper for `scripts/bench-transfer.sh`: serves generated
//! objects from the emulated COS (`serve`), and downloads presigned URLs
//! with the transfer engine, every check on (`fetch`).
//!
//! ```text
//! bench_transfer serve --size BYTES [--files N] [--rate BYTES_PER_SEC]
//!     prints "url <URL>" per object, then "ready"; serves until killed
//! bench_transfer fetch --dir DIR --size BYTES [--segments N] [--adapt-ms MS] URL...
//!     downloads every URL at once, verifies size and CRC-64, prints a summary
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use futures::future::join_all;
use tcbackup_core::transfer::{Downloader, FileJob, FixedUrl, TransferConfig};
use tcbackup_core::verify::{self, Expectations};
use tcbackup_emulator::cos::{router, CosStore, ObjectBody, ObjectOptions, UrlShape};
use tcbackup_signing::clock::SystemClock;
use tcbackup_signing::secret::SignedUrl;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve `files` generated objects of `size` bytes.
    Serve {
        #[arg(long)]
        size: u64,
        #[arg(long, default_value_t = 1)]
        files: u64,
        /// Per-connection rate cap in bytes per second.
        #[arg(long)]
        rate: Option<u64>,
    },
    /// Download every URL concurrently into `dir`.
    Fetch {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        size: u64,
        /// The most connections per file (1 = one stream); how many are
        /// used is measured by the engine.
        #[arg(long, default_value_t = 1)]
        segments: usize,
        /// Sidecar checkpoint interval in MiB (engine default 8).
        #[arg(long, default_value_t = 8)]
        checkpoint_mib: u64,
        /// fsync interval in MiB (engine default 128).
        #[arg(long, default_value_t = 128)]
        sync_mib: u64,
        /// Receive buffer size in KiB (engine default 512).
        #[arg(long, default_value_t = 512)]
        buffer_kib: usize,
        /// Memory for received bytes not yet written, in MiB (engine default 16).
        #[arg(long, default_value_t = 16)]
        budget_mib: usize,
        /// Connections over all files (engine default 16).
        #[arg(long)]
        connections: Option<usize>,
        /// How often the adaptive connection count measures, in ms
        /// (engine default 500).
        #[arg(long)]
        adapt_ms: Option<u64>,
        urls: Vec<String>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve { size, files, rate } => serve(size, files, rate).await,
        Command::Fetch {
            dir,
            size,
            segments,
            checkpoint_mib,
            sync_mib,
            buffer_kib,
            budget_mib,
            connections,
            adapt_ms,
            urls,
        } => {
            let config = TransferConfig {
                checkpoint_bytes: checkpoint_mib << 20,
                sync_bytes: sync_mib << 20,
                buffer_size: buffer_kib << 10,
                buffer_budget: budget_mib << 20,
                max_connections: connections.unwrap_or(TransferConfig::default().max_connections),
                adapt_interval: adapt_ms
                    .map(std::time::Duration::from_millis)
                    .unwrap_or(TransferConfig::default().adapt_interval),
                ..TransferConfig::default()
            };
            fetch(config, dir, size, segments, urls).await
        }
    }
}

async fn serve(size: u64, files: u64, rate: Option<u64>) -> anyhow::Result<()> {
    let store = CosStore::new(Arc::new(SystemClock), "AKIDbench", "benchSecretKey");
    store.set_rate_limit(rate);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    for i in 0..files {
        let key = format!("bench/object-{i}.bin");
        store.put(
            &key,
            ObjectBody::Generated { seed: i, len: size },
            ObjectOptions::default(),
        )?;
        // Compute the CRC header now, not during the first download.
        store.crc64(&key).await.context("crc of generated object")?;
        println!(
            "url {}",
            store.presign(&base, &key, 21_600, UrlShape::TopLevel)
        );
    }
    println!("ready");
    axum::serve(listener, router(store)).await?;
    Ok(())
}

async fn fetch(
    base: TransferConfig,
    dir: PathBuf,
    size: u64,
    segments: usize,
    urls: Vec<String>,
) -> anyhow::Result<()> {
    let files = urls.len().max(1);
    let config = TransferConfig {
        allow_http: true,
        segments,
        segment_threshold: if segments > 1 { 1 } else { u64::MAX },
        max_files: files,
        free_space_margin: 0,
        ..base
    };
    let dl = Downloader::new(config, Arc::new(SystemClock))?;
    let started = Instant::now();
    let runs = urls.into_iter().enumerate().map(|(i, url)| {
        let (dl, dir) = (&dl, dir.clone());
        async move {
            let (tx, mut rx) = tokio::sync::mpsc::channel(64);
            // When the last byte arrived (the rest is the final fsync).
            let drain = tokio::spawn(async move {
                let mut last_bytes = None;
                while let Some(ev) = rx.recv().await {
                    if matches!(ev, tcbackup_core::transfer::ProgressEvent::Bytes { .. }) {
                        last_bytes = Some(Instant::now());
                    }
                }
                last_bytes
            });
            let job = FileJob {
                backup_id: "bench".into(),
                file_name: format!("object-{i}.bin"),
                expected_size: size,
                partial_dir: dir,
                url: Arc::new(FixedUrl(SignedUrl::new(url))),
            };
            let fetched = dl.fetch(job, tx, CancellationToken::new()).await?;
            let done = Instant::now();
            if let Some(last) = drain.await? {
                eprintln!(
                    "{}: last byte {:.2} s before the file was durable",
                    fetched.path.display(),
                    done.duration_since(last).as_secs_f64()
                );
            }
            let expect = Expectations {
                size,
                server_crc64: fetched.server_crc64,
                rdb: false,
            };
            if fetched.server_crc64.is_none() {
                bail!("server sent no crc64 to check against");
            }
            let path = fetched.path.clone();
            let digests = fetched.digests();
            tokio::task::spawn_blocking(move || {
                verify::verify_with_digests(&path, &digests, &expect)
            })
            .await??;
            anyhow::Ok(fetched)
        }
    });
    let results = join_all(runs).await;
    let secs = started.elapsed().as_secs_f64();
    let mut total = 0u64;
    for r in results {
        let f = r?;
        total += f.size;
        println!(
            "ok {} sha256={} crc64={}",
            f.path.display(),
            hex::encode(f.sha256),
            f.crc64
        );
    }
    println!(
        "fetched {total} bytes in {secs:.2} s ({:.0} MiB/s)",
        total as f64 / secs / 1048576.0
    );
    Ok(())
}
