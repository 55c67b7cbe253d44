//! `tcbackup demo`: starts the built-in emulator with sample data (a
//! three-shard Redis cluster, a Redis instance whose backups are encrypted,
//! and a PostgreSQL instance with base and log backups), pulls everything
//! into a local directory with progress bars, and prints where everything
//! went (an encrypted set with its key file) and the retention plan.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;

use crate::context;
use tcbackup_core::config::Config;
use tcbackup_core::exit::Exit;
use tcbackup_core::retention;
use tcbackup_emulator::{Emulator, EmulatorOptions};

/// Per-connection speed of the demo's COS, bytes per second.
const DEMO_RATE: u64 = 256 * 1024;

/// The demo's configuration; `[api] endpoint`, `download_dir` and the
/// credentials are filled in at run time.
pub const DEMO_CONFIG: &str = include_str!("../config/demo.toml");

/// The demo config as TOML, pointed at `endpoint` and `dir` (absolute),
/// with the key pair when given.
pub fn demo_config_text(
    endpoint: &str,
    credentials: Option<(&str, &str)>,
    dir: &Path,
) -> anyhow::Result<String> {
    let mut value: toml::Table =
        toml::from_str(DEMO_CONFIG).context("config/demo.toml is not valid TOML")?;
    value.insert(
        "download_dir".into(),
        toml::Value::String(dir.display().to_string()),
    );
    let api = value
        .entry("api")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if let toml::Value::Table(api) = api {
        api.insert("endpoint".into(), toml::Value::String(endpoint.to_string()));
        api.insert("allow_http_downloads".into(), toml::Value::Boolean(true));
    }
    if let Some((secret_id, secret_key)) = credentials {
        let mut table = toml::Table::new();
        table.insert(
            "secret_id".into(),
            toml::Value::String(secret_id.to_string()),
        );
        table.insert(
            "secret_key".into(),
            toml::Value::String(secret_key.to_string()),
        );
        value.insert("credentials".into(), toml::Value::Table(table));
    }
    toml::to_string(&value).context("cannot write the demo config")
}

/// The demo config pointed at a running emulator and `dir`.
pub fn demo_config(
    endpoint: &str,
    secret_id: &str,
    secret_key: &str,
    dir: &Path,
) -> anyhow::Result<Config> {
    let text = demo_config_text(endpoint, Some((secret_id, secret_key)), dir)?;
    Config::from_str(&text, "config/demo.toml").map_err(|e| anyhow::anyhow!("{e}"))
}

/// Run the demo into `dir`; returns how the pull ended.
pub async fn run(dir: &Path) -> anyhow::Result<Exit> {
    let shutdown = context::shutdown_on_signals()?;
    let emulator = Emulator::start(EmulatorOptions::new().sample(true))
        .await
        .context("cannot start the built-in emulator")?;
    crate::outln!(
        "Built-in emulator of the Tencent Cloud APIs and COS listening on {}",
        emulator.endpoint()
    );
    let dir =
        std::path::absolute(dir).with_context(|| format!("cannot resolve {}", dir.display()))?;
    let dir = dir.as_path();
    let config = Arc::new(demo_config(
        &emulator.endpoint(),
        emulator.secret_id(),
        emulator.secret_key().expose(),
        dir,
    )?);
    for instance in &config.instances {
        crate::outln!(
            "  {} {} ({})",
            instance.service,
            instance.instance_id,
            instance.region
        );
    }
    // The sample backups are small; served at full loopback speed the pull
    // would be over before a bar is drawn. A per-connection cap makes it
    // last a few seconds (a real pull is limited by the network instead).
    emulator.cos().set_rate_limit(Some(DEMO_RATE));
    crate::outln!(
        "Pulling into {} (the emulator serves {}/s per connection so the bars can be seen)\n",
        config.download_dir.display(),
        tcbackup_core::progress::human_bytes(DEMO_RATE)
    );

    let ctx = context::build_context(
        config.clone(),
        context::system_clock(),
        context::progress_for_terminal(),
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let lock = ctx.store.lock().map_err(|e| anyhow::anyhow!("{e}"))?;
    let report = ctx.run_cycle(&lock, &shutdown.token()).await;
    drop(lock);
    crate::commands::print_summary(&report);

    crate::outln!("\nWhat is on disk:");
    let now = ctx.clock.now();
    for instance in &config.instances {
        let listing = ctx
            .store
            .list_sets(&instance.instance_id)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        for set in &listing.sets {
            let meta = &set.manifest.meta;
            let marker = match (meta.is_manual(), &meta.remark) {
                (true, Some(remark)) => format!("  [manual: {remark}]"),
                (true, None) => "  [manual]".to_string(),
                (false, _) => String::new(),
            };
            crate::outln!("  {}/{marker}", set.dir.display());
            for file in &set.manifest.files {
                let crc = if file.crc64_checked_against_cos {
                    "crc64 matched COS"
                } else {
                    "no COS crc64"
                };
                crate::outln!(
                    "      {:<64} {:>10}  sha256 {}…  {crc}",
                    file.name,
                    tcbackup_core::progress::human_bytes(file.size).to_string(),
                    &file.sha256[..16]
                );
            }
            if let Some(e) = &set.manifest.encryption {
                match &e.key_file {
                    Some(key) => crate::outln!(
                        "      {key:<64} {:>10}  decryption key ({}), owner-only; the files above are ciphertext",
                        "",
                        e.algorithm
                    ),
                    None => crate::outln!(
                        "      (no key: the API gave none for this {} backup; KMS key {})",
                        e.algorithm,
                        e.kms_key_id.as_deref().unwrap_or("-")
                    ),
                }
            }
            crate::outln!("      manifest.json");
        }
        let plan = retention::plan(&listing.set_infos(), &instance.retention, now);
        crate::outln!(
            "\nRetention plan for {} ({}):\n{plan}",
            instance.instance_id,
            instance.retention
        );
    }
    let emulator_endpoint = emulator.endpoint();
    emulator
        .shutdown()
        .await
        .context("emulator did not stop cleanly")?;
    let code = report.exit();
    if code == Exit::Ok {
        // A config for the local commands (they need no emulator). It holds
        // no key: the emulator is gone, and nothing here calls the API.
        let config_path = dir.with_extension("toml");
        let text = demo_config_text(&emulator_endpoint, None, dir)?;
        std::fs::write(&config_path, text)
            .with_context(|| format!("cannot write {}", config_path.display()))?;
        let c = config_path.display();
        crate::outln!("\nDemo complete. The config it used (without the key) is {c}; try:");
        crate::outln!("  tcbackup --config {c} list --local");
        crate::outln!("  tcbackup --config {c} verify");
        crate::outln!("  tcbackup --config {c} prune --dry-run");
    }
    Ok(code)
}
