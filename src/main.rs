//! The `inbox-sla` binary: argument parsing and logging set-up over the library.

use clap::{Parser, Subcommand};
use inbox_sla::commands::{self, CliError};
use inbox_sla::config::{self, Config, LogFormat};
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
    Check,
    /// Send a clearly marked test message through the channels
    TestNotify {
        /// Only this channel
        #[arg(long, value_name = "NAME")]
        channel: Option<String>,
    },
    /// Open episodes, mutes, and pending or failed deliveries
    Alerts {
        /// Also waiting chats below the SLA and recently sent notifications
        #[arg(long)]
        all: bool,
    },
    /// Silence one chat for a while (kept in the store)
    Mute {
        /// The chat's JID, e.g. 201234567890@c.us
        jid: String,
        /// How long, e.g. 4h or "1h 30m"
        #[arg(long = "for", value_name = "DURATION")]
        duration: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Lift a mute
    Unmute { jid: String },
    /// A self-contained demo on a simulated inbox; needs no account and no config
    Demo,
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
    if matches!(command, Command::Demo) {
        init_logging("warn", LogFormat::Text);
        return finish(runtime.block_on(inbox_sla::demo::run()));
    }
    let path = config::resolve_path(cli.config);
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("inbox-sla: {e}");
            return ExitCode::from(commands::EXIT_USAGE);
        }
    };
    init_logging(&config.log.level, config.log.format);
    if !matches!(command, Command::Check) {
        for w in &config.warnings {
            tracing::warn!("{w}");
        }
    }
    let result = match command {
        Command::Check => Ok(commands::check(&config, &path)),
        Command::Once { dry_run } => runtime.block_on(commands::once(config, dry_run)),
        Command::Alerts { all } => commands::alerts(&config, all),
        Command::Mute {
            jid,
            duration,
            reason,
        } => commands::mute(&config, &jid, &duration, reason.as_deref()),
        Command::Unmute { jid } => commands::unmute(&config, &jid),
        Command::TestNotify { channel } => {
            runtime.block_on(commands::test_notify(&config, channel.as_deref()))
        }
        // `demo` returned above; `run` is also what no command means.
        Command::Run | Command::Demo => runtime
            .block_on(inbox_sla::daemon::run(path, config, std::future::pending()))
            .map(|()| ExitCode::SUCCESS),
    };
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
/// text lines carry no timestamp of their own: the journal adds one.
fn init_logging(level: &str, format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    use std::io::IsTerminal;
    // Colours only on a terminal: a log file or the journal gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let _ = match (format, journald) {
        (LogFormat::Json, _) => builder.json().try_init(),
        (LogFormat::Text, true) => builder.without_time().try_init(),
        (LogFormat::Text, false) => builder.try_init(),
    };
}
