//! Generated hostile manifests: every one must be refused. Families: the invalid cases of
//! the shared manifest vectors, oversized documents, deep nesting, alias bombs, invalid
//! UTF-8, NUL bytes, huge numbers, path-like and unicode names, policy escapes, requests
//! over the reservation, uploads that do not match the committed hash, and manifest URLs
//! served by the drill that drip a byte a second or stream far more than the limit.

use crate::Rng;

/// How the manifest reaches the keeper.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// Committed with an empty URI, then PUT to the keeper's API (signed by the tenant).
    Upload(Vec<u8>),
    /// Committed with this URL path on the drill's HTTP server (`/slow/…` or `/huge/…`).
    Url(String),
}

/// One hostile case.
#[derive(Debug, Clone)]
pub struct Case {
    /// Its family.
    pub family: &'static str,
    /// The bytes whose hash the lease commits to.
    pub committed: Vec<u8>,
    /// What is delivered.
    pub delivery: Delivery,
}

const HELLO: &str = "version: 1\nservices:\n  web:\n    image: localhost/berth-hello:latest\n    ports:\n      - port: 8080\n        expose: http\n    resources:\n      cpu: 500m\n      memory: 256Mi\n";

/// Names a tenant might try for a service or a volume.
const NAMES: [&str; 11] = [
    "../etc",
    "web/../../root",
    "/abs",
    "wéb",
    "web\u{202e}gpj",
    "ｗｅｂ",
    "web\u{0}x",
    "web\tx",
    "😀",
    "-web",
    "web.",
];

/// The invalid cases of `protocol/vectors/manifests.json`.
pub fn invalid_vectors() -> eyre::Result<Vec<String>> {
    let path = berth_e2e::repo_root().join("protocol/vectors/manifests.json");
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
    let cases = doc["cases"]
        .as_array()
        .ok_or_else(|| eyre::eyre!("{}: no cases", path.display()))?;
    Ok(cases
        .iter()
        .filter(|c| c["expect"].get("ok").is_none())
        .filter_map(|c| c["manifest"].as_str().map(str::to_owned))
        .collect())
}

fn upload(family: &'static str, bytes: Vec<u8>) -> Case {
    Case {
        family,
        committed: bytes.clone(),
        delivery: Delivery::Upload(bytes),
    }
}

fn alias_bomb(levels: u64, fanout: u64) -> String {
    let mut text = format!("x0: &a0 \"{}\"\n", "z".repeat(2000));
    for i in 1..=levels {
        let refs = vec![format!("*a{}", i - 1); fanout as usize].join(",");
        text.push_str(&format!("x{i}: &a{i} [{refs}]\n"));
    }
    text.push_str(&format!(
        "version: 1\nservices:\n  web:\n    image: localhost/berth-hello:latest\n    args: *a{levels}\n    resources: {{cpu: 100m, memory: 16Mi}}\n"
    ));
    text
}

/// The `i`-th case (each case differs from every other, so each lease commits its own hash).
pub fn case(i: u64, rng: &mut Rng, vectors: &[String]) -> Case {
    let tag = format!("# drill case {i}\n");
    let hello = format!("{HELLO}{tag}");
    match rng.between(0, 99) {
        0..=24 => {
            let v = &vectors[rng.between(0, vectors.len() as u64 - 1) as usize];
            upload("shared vector", format!("{v}\n{tag}").into_bytes())
        }
        25..=29 => {
            let pad = "x".repeat(64 * 1024 + rng.between(1, 200_000) as usize);
            upload("oversized", format!("{hello}# {pad}\n").into_bytes())
        }
        30..=34 => {
            let depth = rng.between(64, 20_000) as usize;
            let text = format!(
                "version: 1\nservices: {}{}\n{tag}",
                "[".repeat(depth),
                "]".repeat(depth)
            );
            upload("deep nesting", text.into_bytes())
        }
        35..=39 => {
            let text = alias_bomb(rng.between(4, 9), rng.between(4, 12)) + &tag;
            upload("alias bomb", text.into_bytes())
        }
        40..=44 => {
            let mut bytes = hello.into_bytes();
            for _ in 0..rng.between(1, 8) {
                let at = rng.between(0, bytes.len() as u64) as usize;
                bytes.insert(at, rng.between(0x80, 0xff) as u8);
            }
            // At least one byte that can never start UTF-8, inside the document.
            bytes.insert(rng.between(0, 40) as usize, 0xff);
            upload("invalid UTF-8", bytes)
        }
        45..=47 => {
            let mut bytes = hello.into_bytes();
            let at = rng.between(0, bytes.len() as u64 - 1) as usize;
            bytes.insert(at, 0);
            upload("NUL byte", bytes)
        }
        48..=57 => {
            let digits = "9".repeat(rng.between(20, 2000) as usize);
            let text = match rng.between(0, 4) {
                0 => hello.replace("cpu: 500m", &format!("cpu: {digits}")),
                1 => hello.replace("memory: 256Mi", &format!("memory: {digits}Gi")),
                2 => hello.replace("port: 8080", &format!("port: {digits}")),
                3 => hello.replace("version: 1", &format!("version: {digits}")),
                _ => hello.replace("cpu: 500m", &format!("cpu: 500m\n    replicas: {digits}")),
            };
            upload("huge number", text.into_bytes())
        }
        58..=67 => {
            let name = NAMES[rng.between(0, NAMES.len() as u64 - 1) as usize];
            let text = if rng.chance(50) {
                hello.replace(
                    "  web:",
                    &format!("  \"{}{}\":", name.escape_default(), rng.between(0, 9)),
                )
            } else {
                hello.replace(
                    "      memory: 256Mi\n",
                    &format!(
                        "      memory: 256Mi\n    volumes:\n      - name: \"{}\"\n        mount: \"/{}/../../etc\"\n",
                        name.escape_default(),
                        name.escape_default()
                    ),
                )
            };
            upload("path-like or unicode name", text.into_bytes())
        }
        68..=79 => {
            let escape = match rng.between(0, 3) {
                0 => "    privileged: true\n".to_owned(),
                1 => "    host_network: true\n".to_owned(),
                2 => format!(
                    "    capabilities: [{}]\n",
                    ["SYS_ADMIN", "NET_ADMIN", "SYS_PTRACE", "ALL"][rng.between(0, 3) as usize]
                ),
                _ => format!(
                    "    volumes:\n      - name: root\n        mount: /host\n        host_path: \"{}\"\n",
                    ["/", "/etc", "/var/run/docker.sock", "/proc"][rng.between(0, 3) as usize]
                ),
            };
            upload("policy escape", format!("{hello}{escape}").into_bytes())
        }
        80..=85 => {
            let text = if rng.chance(50) {
                hello.replace("cpu: 500m", &format!("cpu: \"{}\"", rng.between(2, 64)))
            } else {
                hello.replace(
                    "memory: 256Mi",
                    &format!("memory: {}Gi", rng.between(1, 512)),
                )
            };
            upload("over the reservation", text.into_bytes())
        }
        86..=93 => Case {
            family: "wrong hash",
            committed: format!("{hello}# committed {}\n", rng.between(0, u64::MAX - 1))
                .into_bytes(),
            delivery: Delivery::Upload(hello.into_bytes()),
        },
        94..=96 => Case {
            family: "slow manifest URL",
            committed: hello.into_bytes(),
            delivery: Delivery::Url(format!("/slow/{i}")),
        },
        _ => Case {
            family: "huge manifest URL",
            committed: hello.into_bytes(),
            delivery: Delivery::Url(format!("/huge/{i}")),
        },
    }
}
