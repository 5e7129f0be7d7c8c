//! `ringtail`: the broker binary.
#![forbid(unsafe_code)]

use clap::Parser;
use ringtail_server::{admin, broker, config, tune};

fn main() {
    let args = match config::Args::try_parse() {
        Ok(args) => args,
        Err(err) => {
            // --help and --version print and exit 0; bad flags exit 2 with clap's message.
            let code = if err.use_stderr() { 2 } else { 0 };
            let _ = err.print();
            std::process::exit(code);
        }
    };
    match &args.command {
        Some(config::Command::Tune(tune)) => std::process::exit(tune::run(tune)),
        Some(config::Command::Admin(admin)) => std::process::exit(admin::run(admin)),
        None => {}
    }
    let config = match config::Config::load(args) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("ringtail: {err}");
            std::process::exit(2);
        }
    };
    let level = match config.log_level.as_str() {
        "error" => tracing::Level::ERROR,
        "warn" => tracing::Level::WARN,
        "debug" => tracing::Level::DEBUG,
        "trace" => tracing::Level::TRACE,
        _ => tracing::Level::INFO,
    };
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    if let Err(failures) = broker::run(config) {
        for err in failures {
            eprintln!("ringtail: {err}");
        }
        std::process::exit(1);
    }
}
