//! The `inbox-sla` binary: argument parsing and logging set-up over the library.

use clap::{Parser, Subcommand};
use inbox_sla::clock::Clock;
use inbox_sla::commands::{self, CliError, Format};
use inbox_sla::config::{self, Config, LogFormat, Secrets};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "inbox-sla",
    version,
    about = "Escalates WhatsApp chats that wait unanswered past an SLA"
)]
struct Cli {
    /// Config file [default: /etc/inbox-sla/config.toml]
    #[arg(long, global = true, env = "INBOX_SLA_CONFIG", value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (the default)
    Run,
    /// One cycle: poll every instance, evaluate, record, deliver, exit
    Once {
        /// Print what would be escalated and resolved; write and send nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Validate the config and print it with every secret shown as ***
    Check {
        /// Print only problems (what the systemd unit's ExecStartPre runs)
        #[arg(long)]
        quiet: bool,
    },
    /// Send a clearly marked test message through the channels
    TestNotify {
        /// Only this channel
        #[arg(long, value_name = "NAME")]
        channel: Option<String>,
    },
    /// Open episodes, mutes, leases, and pending or failed deliveries
    Alerts {
        /// Also waiting chats below the SLA and recently sent notifications
        #[arg(long)]
        all: bool,
        /// text for people, json for scripts (one document)
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Silence one chat for a while (kept in the store)
    Mute {
        /// The chat's JID, e.g. 201234567890@c.us
        jid: String,
        /// How long, e.g. 4h or "1h 30m" (at most 10 years)
        #[arg(long = "for", value_name = "DURATION")]
        duration: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Lift a mute
    Unmute { jid: String },
    /// How the team did: waits that ended, per instance and overall
    Report {
        /// How far back, e.g. 7d, 24h, 30d (at most 10 years)
        #[arg(long, default_value = "7d", value_name = "DURATION")]
        since: String,
        /// Only this instance
        #[arg(long, value_name = "NAME")]
        instance: Option<String>,
        /// text for a terminal, json or csv for scripts and spreadsheets
        #[arg(long, value_enum, default_value = "text")]
        format: commands::ReportFormat,
    },
    /// A self-contained demo on a simulated inbox; needs no account and no config
    Demo,
}

impl Command {
    /// How much of the config's secrets the command reads: operator commands read none
    /// but the store's, so they work while only the service can read its credentials.
    fn secrets(&self) -> Secrets {
        match self {
            Command::Check { .. } => Secrets::Check,
            Command::Alerts { .. }
            | Command::Mute { .. }
            | Command::Unmute { .. }
            | Command::Report { .. } => Secrets::None,
            _ => Secrets::All,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Run);
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
    let config = match Config::load_with(&path, command.secrets()) {
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
            Command::Report {
                since,
                instance,
                format,
            } => commands::report(&config, &since, instance.as_deref(), format, &clock).await,
            Command::TestNotify { channel } => {
                commands::test_notify(&config, channel.as_deref(), &clock).await
            }
            // `demo` returned above; `run` is also what no command means.
            Command::Run | Command::Demo => {
                inbox_sla::daemon::run(path, config, clock, set_log_level, std::future::pending())
                    .await
                    .map(|()| ExitCode::SUCCESS)
                    .map_err(CliError::from)
            }
        }
    });
    finish(result)
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
fn init_logging(level: &str, format: LogFormat) -> inbox_sla::daemon::SetLogLevel {
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
