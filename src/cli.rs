//! The command line as data (docs/spec.md section 3): `main` parses it, and the build script
//! renders the man page `inbox-sla(1)` and the bash, zsh and fish completions from this same
//! definition, so a new command or flag appears in all of them at once.
//!
//! It must not use anything else of the crate: `build.rs` compiles this file on its own,
//! with only `clap` and `clap_complete`.

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "inbox-sla",
    version,
    about = "Escalates WhatsApp chats that wait unanswered past an SLA",
    long_about = "Escalates WhatsApp chats that wait unanswered past an SLA.\n\n\
        It polls the inboxes of WhatsApp Business numbers through the Wawp API and tells \
        on-call once per escalation tier (Slack, email, PagerDuty, Alertmanager, Teams, a \
        webhook) about every chat whose customer has waited unanswered longer than the SLA, \
        and again when the chat is handled. Without a command it runs the daemon."
)]
pub struct Cli {
    /// Config file [default: /etc/inbox-sla/config.toml]
    #[arg(
        long,
        global = true,
        env = "INBOX_SLA_CONFIG",
        value_name = "PATH",
        value_hint = clap::ValueHint::FilePath
    )]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
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
        /// Why, shown by alerts
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Lift a mute
    Unmute {
        /// The chat's JID
        jid: String,
    },
    /// Acknowledge an open episode: "I'm on it" (no further tier for sla.ack_for)
    Ack {
        /// The chat's JID, e.g. 201234567890@c.us
        jid: String,
        /// Who is on it (default: your login name)
        #[arg(long, value_name = "NAME")]
        by: Option<String>,
        /// How long no further tier fires, e.g. 30m (default: sla.ack_for)
        #[arg(long = "for", value_name = "DURATION")]
        duration: Option<String>,
        /// The instance, when the chat is waiting in more than one
        #[arg(long, value_name = "NAME")]
        instance: Option<String>,
    },
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
        format: ReportFormat,
    },
    /// Print shell completions on stdout
    Completions {
        /// The shell to complete for
        shell: Shell,
    },
    /// A self-contained demo on a simulated inbox; needs no account and no config
    Demo,
}

/// How `alerts` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// How `report` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
    Csv,
}

/// The shells `completions` writes for: the three Debian ships completion directories for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

impl Shell {
    /// The completion script, as `completions` prints it and the package installs it.
    pub fn completions(self) -> Vec<u8> {
        let generator = match self {
            Shell::Bash => clap_complete::Shell::Bash,
            Shell::Zsh => clap_complete::Shell::Zsh,
            Shell::Fish => clap_complete::Shell::Fish,
        };
        let mut script = Vec::new();
        clap_complete::generate(generator, &mut Cli::command(), "inbox-sla", &mut script);
        if self == Shell::Bash {
            // clap_complete 4.6 spells a command's state two ways for a program whose name
            // has a hyphen (`inbox__sla__subcmd__once` where it reads the words,
            // `inbox__subcmd__sla__subcmd__once` where it answers; clap-rs/clap#6421), so
            // nothing after a command completed. One spelling, and a test, fix it.
            script = String::from_utf8_lossy(&script)
                .replace("inbox__subcmd__sla", "inbox__sla")
                .into_bytes();
        }
        script
    }
}
