//! Generic decoding of every event of the Berth contracts into named JSON arguments, driven
//! by the same compiled artifacts the typed bindings are generated from.

use std::collections::HashMap;

use alloy::{
    dyn_abi::{DynSolValue, EventExt},
    json_abi::{Event, JsonAbi},
    primitives::{B256, LogData},
};
use serde_json::{Map, Value};

/// One decoded event: its name and its arguments by their Solidity names.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedEvent {
    /// The Solidity event name.
    pub name: String,
    /// Arguments; integers as decimal strings so that uint256 survives JSON.
    pub args: Map<String, Value>,
}

/// Events of one contract by their topic 0: each as declared (for names and types) and as
/// decoded, with every `string` read as `bytes` (the same encoding), so that a string is
/// kept byte for byte even when it is not UTF-8.
#[derive(Debug, Clone)]
pub struct EventTable {
    by_topic: HashMap<B256, (Event, Event)>,
}

/// The event with `string` parameters typed `bytes` (`string[]` as `bytes[]`). That changes
/// its signature, so it is decoded as anonymous, from the topics after topic 0 (which the
/// table already matched against the declared event).
fn strings_as_bytes(event: &Event) -> Event {
    let mut e = event.clone();
    e.anonymous = true;
    for input in &mut e.inputs {
        if !input.indexed {
            input.ty = input.ty.replace("string", "bytes");
        }
    }
    e
}

impl EventTable {
    /// Builds the table from a Foundry artifact (`{"abi": [...], ...}`).
    pub fn from_artifact(artifact: &str) -> Result<Self, serde_json::Error> {
        #[derive(serde::Deserialize)]
        struct Artifact {
            abi: JsonAbi,
        }
        let artifact: Artifact = serde_json::from_str(artifact)?;
        let by_topic = artifact
            .abi
            .events()
            .filter(|e| !e.anonymous)
            .map(|e| (e.selector(), (e.clone(), strings_as_bytes(e))))
            .collect();
        Ok(Self { by_topic })
    }

    /// Whether topic 0 names an event of this contract.
    pub fn knows(&self, topic: &B256) -> bool {
        self.by_topic.contains_key(topic)
    }

    /// Decodes a log whose topic 0 is known; `None` if the topic is unknown.
    pub fn decode(&self, log: &LogData) -> Option<Result<NamedEvent, String>> {
        let (event, as_bytes) = self.by_topic.get(log.topics().first()?)?;
        Some(
            as_bytes
                .decode_log_parts(log.topics().iter().skip(1).copied(), &log.data)
                .map_err(|e| e.to_string())
                .map(|decoded| {
                    let mut indexed = decoded.indexed.into_iter();
                    let mut body = decoded.body.into_iter();
                    let mut args = Map::new();
                    for input in &event.inputs {
                        let value = if input.indexed {
                            indexed.next()
                        } else {
                            body.next()
                        };
                        if let Some(value) = value {
                            let json = if !input.indexed && input.ty.starts_with("string") {
                                string_json(&value)
                            } else {
                                to_json(&value)
                            };
                            args.insert(input.name.clone(), json);
                        }
                    }
                    NamedEvent {
                        name: event.name.clone(),
                        args,
                    }
                }),
        )
    }
}

/// A `string` argument decoded as bytes: a JSON string when it is UTF-8 without NUL (what
/// JSONB and TEXT can hold), else `{"hex": "0x…", "text": "…"}` with the exact bytes and a
/// readable form (invalid bytes and NUL escaped as `\xNN`).
pub fn string_json(value: &DynSolValue) -> Value {
    match value {
        DynSolValue::Bytes(b) => match std::str::from_utf8(b) {
            Ok(text) if !text.contains('\0') => Value::String(text.to_owned()),
            _ => {
                let mut text = String::new();
                for chunk in b.utf8_chunks() {
                    for c in chunk.valid().chars() {
                        if c == '\0' {
                            text.push_str("\\x00");
                        } else {
                            text.push(c);
                        }
                    }
                    for byte in chunk.invalid() {
                        text.push_str(&format!("\\x{byte:02x}"));
                    }
                }
                serde_json::json!({ "hex": alloy::hex::encode_prefixed(b), "text": text })
            }
        },
        DynSolValue::Array(items) | DynSolValue::FixedArray(items) => {
            Value::Array(items.iter().map(string_json).collect())
        }
        other => to_json(other),
    }
}

/// A Solidity value as JSON: integers as decimal strings, bytes as 0x-hex.
pub fn to_json(value: &DynSolValue) -> Value {
    match value {
        DynSolValue::Bool(b) => Value::Bool(*b),
        DynSolValue::Uint(u, _) => Value::String(u.to_string()),
        DynSolValue::Int(i, _) => Value::String(i.to_string()),
        DynSolValue::Address(a) => Value::String(a.to_checksum(None)),
        DynSolValue::FixedBytes(w, size) => Value::String(alloy::hex::encode_prefixed(&w[..*size])),
        DynSolValue::Bytes(b) => Value::String(alloy::hex::encode_prefixed(b)),
        DynSolValue::String(s) => Value::String(s.clone()),
        DynSolValue::Function(f) => Value::String(alloy::hex::encode_prefixed(f.as_slice())),
        DynSolValue::Array(items) | DynSolValue::FixedArray(items) | DynSolValue::Tuple(items) => {
            Value::Array(items.iter().map(to_json).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_kept_exactly_and_never_carry_a_nul_into_json() {
        let clean = string_json(&DynSolValue::Bytes(b"http://a".to_vec()));
        assert_eq!(clean, Value::String("http://a".into()));
        let nul = string_json(&DynSolValue::Bytes(b"a\0b".to_vec()));
        assert_eq!(nul["hex"], "0x610062");
        assert_eq!(nul["text"], "a\\x00b");
        let bad = string_json(&DynSolValue::Bytes(vec![b'x', 0xff, 0xfe]));
        assert_eq!(bad["hex"], "0x78fffe");
        assert_eq!(bad["text"], "x\\xff\\xfe");
        assert!(
            !serde_json::to_string(&nul)
                .unwrap_or_default()
                .contains("\\u0000")
        );
    }
}
