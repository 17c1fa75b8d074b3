//! The `inbox-sla` binary: argument parsing and logging set-up over the library.

use clap::{CommandFactory, FromArgMatches};
use inbox_sla::cli::{Cli, Command, Shell};
use inbox_sla::clock::Clock;
use inbox_sla::commands::{self, CliError};
use inbox_sla::config::{self, Config, LogFormat, Secrets};
use inbox_sla::daemon;
use std::io::Write;
use std::process::ExitCode;

/// "0.1.0 (commit 0123456789ab)", "…, dirty)" when built from modified sources; written by
/// `build.rs`, so no `.git` is needed at run time.
const VERSION: &str = env!("INBOX_SLA_VERSION");

/// How much of the config's secrets a command reads: operator commands read none but the
/// store's, so they work while only the service can read its credentials.
fn secrets(command: &Command) -> Secrets {
    match command {
        Command::Check { .. } => Secrets::Check,
        Command::Alerts { .. }
        | Command::Mute { .. }
        | Command::Unmute { .. }
        | Command::Ack { .. }
        | Command::Report { .. } => Secrets::None,
        _ => Secrets::All,
    }
}

fn main() -> ExitCode {
    let cli = parse();
    let command = cli.command.unwrap_or(Command::Run);
    if let Command::Completions { shell } = command {
        return completions(shell);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("inbox-sla: cannot start the async runtime: {e}");
            return ExitCode::from(commands::EXIT_RUNTIME);
        }
    };
    if let Ok(level) = std::env::var("RUST_LOG")
        && let Err(e) = config::check_log_level(&level)
    {
        eprintln!("inbox-sla: RUST_LOG: {e}");
        return ExitCode::from(commands::EXIT_USAGE);
    }
    if matches!(command, Command::Demo) {
        let _ = init_logging("warn", LogFormat::Text);
        return finish(runtime.block_on(inbox_sla::demo::run()));
    }
    let path = config::resolve_path(cli.config);
    let config = match Config::load_with(&path, secrets(&command)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("inbox-sla: {e}");
            return ExitCode::from(commands::EXIT_USAGE);
        }
    };
    let set_log_level = init_logging(&config.log.level, config.log.format);
    if !matches!(command, Command::Check { .. }) {
        for w in &config.warnings {
            tracing::warn!("{w}");
        }
    }
    let clock = Clock::System;
    let result = runtime.block_on(async {
        match command {
            Command::Check { quiet } => Ok(commands::check(&config, &path, quiet)),
            Command::Once { dry_run } => commands::once(config, dry_run, clock).await,
            Command::Alerts { all, format } => commands::alerts(&config, all, format, &clock).await,
            Command::Mute {
                jid,
                duration,
                reason,
            } => commands::mute(&config, &jid, &duration, reason.as_deref(), &clock).await,
            Command::Unmute { jid } => commands::unmute(&config, &jid).await,
            Command::Ack {
                jid,
                by,
                duration,
                instance,
            } => {
                commands::ack(
                    &config,
                    &jid,
                    by.as_deref(),
                    duration.as_deref(),
                    instance.as_deref(),
                    &clock,
                )
                .await
            }
            Command::Report {
                since,
                instance,
                format,
            } => commands::report(&config, &since, instance.as_deref(), format, &clock).await,
            Command::TestNotify { channel } => {
                commands::test_notify(&config, channel.as_deref(), &clock).await
            }
            // `demo` and `completions` returned above; `run` is also what no command means.
            Command::Run | Command::Demo | Command::Completions { .. } => {
                run(path, config, clock, set_log_level)
                    .await
                    .map(|()| ExitCode::SUCCESS)
                    .map_err(CliError::from)
            }
        }
    });
    finish(result)
}

/// The daemon as a service runs it: signals as its controls (installed first, so a
/// SIGTERM during start-up is a clean stop), the process's metrics recorder, systemd's
/// notify socket, Wawp over HTTP.
async fn run(
    path: std::path::PathBuf,
    config: Config,
    clock: Clock,
    set_log_level: daemon::SetLogLevel,
) -> Result<(), daemon::Error> {
    let control = daemon::signals()?;
    let setup = daemon::Setup {
        metrics: daemon::install_metrics(&config)?,
        notifier: inbox_sla::systemd::Notifier::from_env(),
        set_log_level,
        ..daemon::Setup::new(path, config, clock)
    };
    daemon::run(setup, control).await
}

/// The command line, with the commit in `--version`.
fn parse() -> Cli {
    let mut cmd = Cli::command().version(VERSION);
    let mut matches = cmd.get_matches_mut();
    Cli::from_arg_matches_mut(&mut matches).unwrap_or_else(|e| e.format(&mut cmd).exit())
}

/// `completions SHELL`: the script on stdout, from the same definition as the man page.
fn completions(shell: Shell) -> ExitCode {
    match std::io::stdout().lock().write_all(&shell.completions()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("inbox-sla: cannot write the completions to stdout: {e}");
            ExitCode::from(commands::EXIT_RUNTIME)
        }
    }
}

fn finish(result: Result<ExitCode, CliError>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("inbox-sla: {e}");
            e.exit_code()
        }
    }
}

/// Logs to stderr; `RUST_LOG` overrides `log.level`. Under journald (`JOURNAL_STREAM`),
/// text lines carry no timestamp of their own: the journal adds one. Returns how to change
/// the level later (a reload's `log.level`; not while `RUST_LOG` rules).
fn init_logging(level: &str, format: LogFormat) -> daemon::SetLogLevel {
    use std::io::IsTerminal;
    use tracing_subscriber::{EnvFilter, Layer, prelude::*, reload};
    let from_env = EnvFilter::try_from_default_env().ok();
    let pinned = from_env.is_some();
    let (filter, handle) = reload::Layer::new(from_env.unwrap_or_else(|| EnvFilter::new(level)));
    // Colours only on a terminal: a log file or the journal gets plain text.
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let lines = match (format, journald) {
        (LogFormat::Json, _) => lines.json().boxed(),
        (LogFormat::Text, true) => lines.without_time().boxed(),
        (LogFormat::Text, false) => lines.boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(lines)
        .try_init();
    Box::new(move |level: &str| {
        if pinned {
            return Err("RUST_LOG is set, and it wins over log.level".into());
        }
        handle
            .reload(EnvFilter::new(level))
            .map_err(|e| e.to_string())?;
        tracing::info!("log level is now {level}");
        Ok(())
    })
}
