//! This machine: its name, as claim owners, HA nodes and SMTP's EHLO know it. Ground
//! floor: it reads two files and imports nothing of the crate.

/// This machine's name, for claim owners and HA nodes.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// The host's fully qualified name: the kernel's host name when it has a dot, else the
/// first dotted name `/etc/hosts` gives it (Debian writes `127.0.1.1 vm.example.com vm`).
/// `None` when the host has none.
pub fn fully_qualified_name() -> Option<String> {
    let host = hostname();
    if host.contains('.') {
        return Some(host);
    }
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    hosts
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .filter(|l| l.split_whitespace().skip(1).any(|n| n == host))
        .flat_map(|l| l.split_whitespace().skip(1))
        .find(|n| n.starts_with(&format!("{host}.")))
        .map(str::to_string)
}
