//! The module map of `src/lib.rs` is true in the code: every `crate::` path in a module
//! (tests included) names a module on a lower layer, or an earlier one of its own layer.
//! So there is no import circle and no upward import, and a module's place says what it
//! may know. A new module must be given a layer here and in `lib.rs`.

use std::collections::BTreeMap;
use std::path::Path;

/// Lowest first. Within a layer, a module may use those listed before it.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "foundations: plain data and parsing",
        &[
            "duration",
            "secret",
            "untrusted",
            "clock",
            "host",
            "cli",
            "calendar",
            "overview",
            "share",
            "systemd",
            "access",
            "tls",
            "gauges",
        ],
    ),
    ("the pure core", &["policy", "sla", "alert"]),
    ("channels: each type's settings and sender", &["notify"]),
    ("configuration", &["config"]),
    ("storage", &["store"]),
    (
        "work over the store: polling, delivery, insight",
        &[
            "wawp", "outbox", "cycle", "deliver", "report", "status", "act",
        ],
    ),
    (
        "serving and running",
        &["events", "hooks", "http", "daemon"],
    ),
    ("the command line", &["commands", "demo"]),
];

/// Where each module stands: (layer, position in it).
fn places() -> BTreeMap<&'static str, (usize, usize)> {
    let mut out = BTreeMap::new();
    for (layer, (_, modules)) in LAYERS.iter().enumerate() {
        for (at, m) in modules.iter().enumerate() {
            out.insert(*m, (layer, at));
        }
    }
    out
}

/// The top-level module a source file belongs to (`src/store/sqlite.rs` → `store`).
fn module_of(path: &Path, src: &Path) -> Option<String> {
    let rel = path.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_string())
}

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_import_points_down_the_module_map() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let places = places();
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut wrong = Vec::new();
    for file in &files {
        let Some(module) = module_of(file, &src) else {
            continue;
        };
        let Some(&here) = places.get(module.as_str()) else {
            wrong.push(format!(
                "{}: module `{module}` has no layer",
                file.display()
            ));
            continue;
        };
        assert!(
            lib.contains(&format!("[`{module}`]")),
            "lib.rs's module map does not mention `{module}`"
        );
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let mut rest = line;
            while let Some(at) = rest.find("crate::") {
                rest = &rest[at + "crate::".len()..];
                let used: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if used == module || !places.contains_key(used.as_str()) {
                    continue; // itself, or a crate-root item such as `with_causes`
                }
                if places[used.as_str()] >= here {
                    wrong.push(format!(
                        "{}:{}: `{module}` ({}) uses `{used}` ({})",
                        file.display(),
                        n + 1,
                        LAYERS[here.0].0,
                        LAYERS[places[used.as_str()].0].0
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports that point up or sideways:\n{}",
        wrong.join("\n")
    );
}
