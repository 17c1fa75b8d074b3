//! Build script: the version string `--version` prints (the crate version and the git
//! commit, so a bug report names its build without a `.git` at run time), and the man page
//! `inbox-sla(1)` and bash, zsh and fish completions rendered from the command-line
//! definition in `src/cli.rs`, so they never drift from it.
//!
//! The rendered files go to `OUT_DIR` and are copied to `target/<profile>/generated/`,
//! where `cargo deb` finds them (Cargo gives build products no stable path of their own).

#[path = "src/cli.rs"]
#[allow(dead_code)]
mod cli;

use clap::CommandFactory;
use roff::{Roff, bold, italic, roman};
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

/// What the binary is built from: a build is "dirty" when these differ from the commit.
const SOURCES: [&str; 4] = ["src", "build.rs", "Cargo.toml", "Cargo.lock"];

fn main() {
    if let Err(e) = run() {
        eprintln!("inbox-sla build script: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    for source in SOURCES {
        println!("cargo:rerun-if-changed={source}");
    }
    println!("cargo:rerun-if-env-changed=INBOX_SLA_COMMIT");
    let version = format!("{} ({})", env("CARGO_PKG_VERSION")?, commit()?);
    println!("cargo:rustc-env=INBOX_SLA_VERSION={version}");

    // A build script runs once: leaking the one string clap keeps is harmless.
    let version: &'static str = Box::leak(version.into_boxed_str());
    let mut cmd = cli::Cli::command().version(version);
    cmd.build();
    let mut files: Vec<(&str, Vec<u8>)> = vec![("inbox-sla.1.gz", gzip(&man_page(&cmd)?)?)];
    for (name, shell) in [
        ("inbox-sla.bash", cli::Shell::Bash),
        ("_inbox-sla", cli::Shell::Zsh),
        ("inbox-sla.fish", cli::Shell::Fish),
    ] {
        files.push((name, shell.completions()));
    }

    let out = PathBuf::from(env("OUT_DIR")?);
    // OUT_DIR is target/<profile>/build/inbox-sla-<hash>/out.
    let profile = out
        .ancestors()
        .nth(3)
        .ok_or_else(|| format!("OUT_DIR {} is not where Cargo puts it", out.display()))?;
    for dir in [out.clone(), profile.join("generated")] {
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        for (name, bytes) in &files {
            let path = dir.join(name);
            std::fs::write(&path, bytes)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
    }
    Ok(())
}

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("Cargo did not set {name}"))
}

/// "commit 0123456789ab", with ", dirty" when the sources differ from it. `INBOX_SLA_COMMIT`
/// names it for a build from a tarball; without either, it says it is unknown.
fn commit() -> Result<String, String> {
    if let Ok(commit) = std::env::var("INBOX_SLA_COMMIT")
        && !commit.trim().is_empty()
    {
        return Ok(format!("commit {}", commit.trim()));
    }
    let dir = PathBuf::from(env("CARGO_MANIFEST_DIR")?);
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git")
            .arg("--no-optional-locks")
            .arg("-C")
            .arg(&dir)
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    // A tarball unpacked inside some other repository must not take that one's commit.
    let top = git(&["rev-parse", "--show-toplevel"]).map(PathBuf::from);
    if top.and_then(|t| t.canonicalize().ok()) != dir.canonicalize().ok() {
        return Ok("commit unknown: not built from a git checkout".into());
    }
    let Some(hash) = git(&["rev-parse", "--short=12", "HEAD"]) else {
        return Ok("commit unknown: the checkout has no commit".into());
    };
    // Rebuild when HEAD moves (a commit, a checkout); source edits are watched above.
    let head_ref = git(&["symbolic-ref", "-q", "HEAD"]);
    for name in ["HEAD", "logs/HEAD", "packed-refs"]
        .into_iter()
        .chain(head_ref.as_deref())
    {
        if let Some(path) = git(&["rev-parse", "--git-path", name]) {
            let path = dir.join(path);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    let mut status = vec!["status", "--porcelain", "--"];
    status.extend(SOURCES);
    Ok(match git(&status) {
        Some(changes) if changes.is_empty() => format!("commit {hash}"),
        Some(_) => format!("commit {hash}, dirty"),
        None => format!("commit {hash}, dirty or not: git status failed"),
    })
}

/// `inbox-sla(1)`: clap_mangen's sections for the program, then every command with its
/// options (clap_mangen alone lists the commands' names only), then the files, the
/// environment and the exit codes of docs/spec.md section 3.
fn man_page(cmd: &clap::Command) -> Result<Vec<u8>, String> {
    let version = cmd.get_version().unwrap_or_default().to_string();
    let man = clap_mangen::Man::new(cmd.clone())
        .source(format!("inbox-sla {version}"))
        .manual("inbox-sla manual");
    let mut page = Vec::new();
    let io = |e: std::io::Error| format!("cannot render the man page: {e}");
    man.render_title(&mut page).map_err(io)?;
    man.render_name_section(&mut page).map_err(io)?;
    let mut synopsis = Roff::new();
    synopsis.control("SH", ["SYNOPSIS"]).text([
        bold("inbox-sla"),
        roman(" [--config "),
        italic("PATH"),
        roman("] ["),
        italic("COMMAND"),
        roman("]"),
    ]);
    synopsis.to_writer(&mut page).map_err(io)?;
    man.render_description_section(&mut page).map_err(io)?;
    man.render_options_section(&mut page).map_err(io)?;

    let mut roff = Roff::new();
    roff.control("SH", ["COMMANDS"]);
    let commands = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help");
    for sub in commands {
        command_entry(&mut roff, sub);
    }
    let files = [
        (
            "/etc/inbox-sla/config.toml",
            "The configuration (the default --config). The package installs the example as a conffile.",
        ),
        (
            "/var/lib/inbox-sla/state.db",
            "The SQLite store of the systemd service (its StateDirectory).",
        ),
        (
            "/usr/share/doc/inbox-sla/README.md",
            "The full documentation: configuration, channels, policies, metrics.",
        ),
    ];
    let environment = [
        (
            "INBOX_SLA_CONFIG",
            "The config file, when --config is not given.",
        ),
        (
            "RUST_LOG",
            "The log level (error, warn, info, debug, trace), overriding log.level.",
        ),
    ];
    let exit_status = [
        ("0", "Success."),
        (
            "1",
            "A runtime failure; in once: an instance could not be polled, or a delivery failed.",
        ),
        ("2", "A usage or configuration error."),
    ];
    // Paths in italics, names and codes in bold.
    for (heading, entries, is_path) in [
        ("FILES", &files[..], true),
        ("ENVIRONMENT", &environment[..], false),
        ("EXIT STATUS", &exit_status[..], false),
    ] {
        roff.control("SH", [heading]);
        for (name, what) in entries {
            roff.control("TP", []);
            roff.text([if is_path { italic(*name) } else { bold(*name) }]);
            roff.text([roman(*what)]);
        }
    }
    roff.control("SH", ["SEE ALSO"]);
    roff.text([roman(
        "systemctl(1), journalctl(1), and the unit inbox-sla.service: \
         systemctl reload re-reads the configuration.",
    )]);
    roff.to_writer(&mut page).map_err(io)?;
    man.render_version_section(&mut page).map_err(io)?;
    Ok(page)
}

/// One command: a synopsis line with every argument, its description, then its options.
fn command_entry(roff: &mut Roff, sub: &clap::Command) {
    let args: Vec<&clap::Arg> = sub
        .get_arguments()
        .filter(|a| !a.is_hide_set() && !a.is_global_set() && a.get_id() != "help")
        .collect();
    let mut synopsis = vec![bold(format!("inbox-sla {}", sub.get_name()))];
    for arg in &args {
        let text = arg_text(arg);
        synopsis.push(roman(" "));
        if arg.is_required_set() {
            synopsis.extend(text);
        } else {
            synopsis.push(roman("["));
            synopsis.extend(text);
            synopsis.push(roman("]"));
        }
    }
    roff.control("SS", [sub.get_name()]);
    roff.text(synopsis);
    roff.control("br", []);
    if let Some(about) = sub.get_long_about().or(sub.get_about()) {
        roff.text([roman(about.to_string())]);
    }
    for arg in args {
        roff.control("TP", []);
        roff.text(arg_text(arg));
        let mut help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        let takes_value = arg.get_num_args().is_some_and(|n| n.takes_values());
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        if takes_value && !defaults.is_empty() {
            help.push_str(&format!(" [default: {}]", defaults.join(", ")));
        }
        roff.text([roman(help)]);
    }
}

/// `--for DURATION`, `--format text|json`, `--dry-run` or `JID`, in man-page type.
fn arg_text(arg: &clap::Arg) -> Vec<roff::Inline> {
    let values: Vec<String> = arg
        .get_possible_values()
        .iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| v.get_name().to_string())
        .collect();
    let value = if !values.is_empty() {
        values.join("|")
    } else {
        arg.get_value_names()
            .and_then(|n| n.first())
            .map(|n| n.to_string())
            .unwrap_or_else(|| arg.get_id().to_string().to_uppercase())
    };
    match arg.get_long() {
        Some(long) if arg.get_num_args().is_some_and(|n| n.takes_values()) => {
            vec![bold(format!("--{long}")), roman(" "), italic(value)]
        }
        Some(long) => vec![bold(format!("--{long}"))],
        None => vec![italic(value)],
    }
}

/// `gzip -9n`, as Debian policy wants man pages: best compression, no name, no time.
fn gzip(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut z = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    z.write_all(bytes)
        .and_then(|()| z.finish())
        .map_err(|e| format!("cannot compress the man page: {e}"))
}
