//! What the package gives a user beside the daemon (issue "package"): `--version` names the
//! build, the bash completions complete every command and flag, the man page shows every
//! command and option, and the package's systemd unit is the repository's with only the
//! paths changed. Each check walks the clap definition itself, so a new command (`ack`) is
//! checked without touching this file.

mod common;

use clap::CommandFactory;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn binary() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_inbox-sla"));
    cmd.env_remove("INBOX_SLA_CONFIG");
    cmd
}

/// `(command, its own long options)` for every visible command, from the definition
/// (`--config` is global, and `--help` everywhere; both are checked at the top).
fn commands() -> Vec<(String, Vec<String>)> {
    let mut cli = inbox_sla::cli::Cli::command();
    cli.build();
    cli.get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        .map(|s| {
            let longs = s
                .get_arguments()
                .filter(|a| !a.is_hide_set() && !a.is_global_set() && a.get_id() != "help")
                .filter_map(|a| a.get_long())
                .map(|l| format!("--{l}"))
                .collect();
            (s.get_name().to_string(), longs)
        })
        .collect()
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn version_names_the_crate_version_and_the_commit_without_a_checkout() {
    // Run from an empty directory, with no git repository to find: all of it is built in.
    let empty = tempfile::tempdir().unwrap();
    let out = binary()
        .arg("--version")
        .current_dir(empty.path())
        .env("GIT_DIR", empty.path().join("nothing"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let line = String::from_utf8(out.stdout).unwrap();
    let prefix = format!("inbox-sla {} (commit ", env!("CARGO_PKG_VERSION"));
    assert!(line.starts_with(&prefix), "{line}");
    let short = binary().arg("-V").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&short.stdout), line);

    let top = git(&["rev-parse", "--show-toplevel"]).map(PathBuf::from);
    let in_checkout = top.is_some_and(|t| {
        t.canonicalize().ok() == Path::new(env!("CARGO_MANIFEST_DIR")).canonicalize().ok()
    });
    if !in_checkout || std::env::var("INBOX_SLA_COMMIT").is_ok() {
        assert!(line.contains("(commit "), "{line}");
        return;
    }
    let head = git(&["rev-parse", "--short=12", "HEAD"]).unwrap();
    let dirty = !git(&[
        "status",
        "--porcelain",
        "--",
        "src",
        "build.rs",
        "Cargo.toml",
        "Cargo.lock",
    ])
    .unwrap()
    .is_empty();
    let want = if dirty {
        format!("{prefix}{head}, dirty)\n")
    } else {
        format!("{prefix}{head})\n")
    };
    assert_eq!(line, want);
}

/// What bash offers after `words` (the last one being completed), through the function the
/// script registers with `complete -F`, as readline would call it.
const DRIVER: &str = r#"
source "$1"; shift
spec=$(complete -p inbox-sla) || { echo "no completion registered for inbox-sla"; exit 3; }
fn=$(sed -E 's/.* -F ([^ ]+) .*/\1/' <<<"$spec")
COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 ))
COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}; COMPREPLY=()
"$fn" inbox-sla "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\n' "${COMPREPLY[@]}"
"#;

#[test]
fn bash_completes_every_command_and_flag() {
    if Command::new("bash").arg("-c").arg("true").status().is_err() {
        skip("bash completions: bash is not installed", true);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("inbox-sla.bash");
    let out = binary().args(["completions", "bash"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    std::fs::write(&script, &out.stdout).unwrap();
    let offers = |words: &[&str]| -> Vec<String> {
        let out = Command::new("bash")
            .arg("-c")
            .arg(DRIVER)
            .arg("driver")
            .arg(&script)
            .arg("inbox-sla")
            .args(words)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "bash: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    };

    let top = offers(&[""]);
    for flag in ["--config", "--help", "--version"] {
        assert!(top.contains(&flag.to_string()), "{flag} in {top:?}");
    }
    for (name, longs) in commands() {
        assert!(top.contains(&name), "command {name} not offered: {top:?}");
        let prefix = &name[..2];
        assert!(
            offers(&[prefix]).contains(&name),
            "{prefix}<TAB> does not offer {name}"
        );
        // Mute's JID comes first; a flag is offered wherever it may stand.
        let words: Vec<&str> = if name == "mute" || name == "unmute" {
            vec![&name, "201234567890@c.us", "--"]
        } else {
            vec![&name, "--"]
        };
        let flags = offers(&words);
        for long in longs {
            assert!(
                flags.contains(&long),
                "{name} {long} not offered: {flags:?}"
            );
        }
    }
    assert_eq!(offers(&["alerts", "--format", ""]), ["text", "json"]);
    assert_eq!(offers(&["completions", "f"]), ["fish"]);
}

#[test]
fn zsh_and_fish_completions_name_every_command() {
    for shell in ["zsh", "fish"] {
        let out = binary().args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        for (name, longs) in commands() {
            assert!(text.contains(&name), "{shell}: no {name}");
            for long in longs {
                let bare = long.trim_start_matches('-');
                assert!(text.contains(bare), "{shell}: no {name} {long}");
            }
        }
    }
    let out = binary().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}

/// The man page the build renders, as `man` shows it on an 80-column terminal.
#[test]
fn man_page_shows_every_command_and_option() {
    let page = Path::new(env!("CARGO_BIN_EXE_inbox-sla"))
        .with_file_name("generated")
        .join("inbox-sla.1.gz");
    assert!(page.exists(), "the build did not render {}", page.display());
    let Ok(out) = Command::new("man")
        .args(["--warnings", "-l"])
        .arg(&page)
        .env("MANWIDTH", "80")
        .env("LC_ALL", "C")
        .env("MANPAGER", "cat")
        .output()
    else {
        skip("man page rendering: man (man-db) is not installed", true);
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let warnings = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success() && warnings.is_empty(), "{warnings}");
    for section in [
        "NAME",
        "SYNOPSIS",
        "OPTIONS",
        "COMMANDS",
        "FILES",
        "EXIT STATUS",
    ] {
        assert!(
            text.contains(&format!("\n{section}\n")),
            "no {section}:\n{text}"
        );
    }
    assert!(text.contains("--config"), "{text}");
    let commands = commands();
    for (i, (name, longs)) in commands.iter().enumerate() {
        // The command's own subsection: from its heading to the next command's.
        let start = text
            .find(&format!("\n   {name}\n"))
            .unwrap_or_else(|| panic!("no {name} in the man page:\n{text}"));
        let end = commands
            .get(i + 1)
            .and_then(|(next, _)| text.find(&format!("\n   {next}\n")))
            .unwrap_or(text.len());
        // Justified text: words, whatever the spaces between them.
        let entry = text[start..end]
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        assert!(entry.contains(&format!("inbox-sla {name}")), "{entry}");
        for long in longs {
            assert!(
                entry.contains(long.as_str()),
                "{name}: no {long} in\n{entry}"
            );
        }
    }
}

/// The package's unit (`/usr/bin`) and the repository's (`/usr/local/bin`, for `cargo
/// install`) differ in the binary's path, the documentation, and the credentials: systemd
/// fails a unit whose credential file is missing, so the package's unit loads none until
/// the administrator adds them (every one the repository's unit names is shown, commented).
#[test]
fn the_package_unit_is_the_repository_unit_with_the_package_paths() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let repo = std::fs::read_to_string(root.join("systemd/inbox-sla.service")).unwrap();
    let package = std::fs::read_to_string(root.join("packaging/deb/inbox-sla.service")).unwrap();
    let directives = |unit: &str| -> Vec<String> {
        unit.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .collect()
    };
    let expected: Vec<String> = directives(&repo)
        .into_iter()
        .filter(|l| !l.starts_with("LoadCredential="))
        .map(|l| {
            if l.starts_with("Documentation=") {
                "Documentation=man:inbox-sla(1) file:///usr/share/doc/inbox-sla/README.md".into()
            } else {
                l.replace("/usr/local/bin/inbox-sla", "/usr/bin/inbox-sla")
            }
        })
        .collect();
    assert_eq!(directives(&package), expected);
    assert!(package.contains("\nExecStart=/usr/bin/inbox-sla run\n"));
    assert!(!package.contains("/usr/local"));
    for line in repo.lines().filter(|l| l.contains("LoadCredential=")) {
        let commented = format!("#{}", line.trim_start_matches('#'));
        assert!(
            package.contains(&commented),
            "the package unit lacks {commented}"
        );
    }
}

/// dpkg and lintian read the package's version history from the changelog: its newest
/// entry must be this version.
#[test]
fn the_package_changelog_names_this_version() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let changelog = std::fs::read_to_string(root.join("packaging/deb/changelog")).unwrap();
    let first = changelog.lines().next().unwrap_or_default();
    let want = format!("inbox-sla ({}-1) ", env!("CARGO_PKG_VERSION"));
    assert!(first.starts_with(&want), "{first:?} should start {want:?}");
}
