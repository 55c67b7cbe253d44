//! Runs the emulator standalone (`cargo run --example emulator -- --listen
//! 127.0.0.1:9000`) until `tcbackup emulator --listen` exists in the binary;
//! used by `tests/sdk/run.sh`. Takes the key pair from
//! `TENCENTCLOUD_SECRET_ID` / `TENCENTCLOUD_SECRET_KEY` when both are set.

use std::net::SocketAddr;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let listen = match args.as_slice() {
        [flag, addr] if flag == "--listen" => addr.clone(),
        [] => "127.0.0.1:9000".to_string(),
        _ => {
            eprintln!("usage: emulator [--listen ADDR]");
            return ExitCode::from(2);
        }
    };
    let listen: SocketAddr = match listen.parse() {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("emulator: invalid --listen address {listen:?}: {e}");
            return ExitCode::from(2);
        }
    };
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let id = env("TENCENTCLOUD_SECRET_ID");
    let key = env("TENCENTCLOUD_SECRET_KEY");
    match tcbackup::emulator::run_standalone(listen, id, key).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("emulator: {e}");
            ExitCode::FAILURE
        }
    }
}
