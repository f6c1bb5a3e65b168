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

/// Events of one contract by their topic 0.
#[derive(Debug, Clone)]
pub struct EventTable {
    by_topic: HashMap<B256, Event>,
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
            .map(|e| (e.selector(), e.clone()))
            .collect();
        Ok(Self { by_topic })
    }

    /// Whether topic 0 names an event of this contract.
    pub fn knows(&self, topic: &B256) -> bool {
        self.by_topic.contains_key(topic)
    }

    /// Decodes a log whose topic 0 is known; `None` if the topic is unknown.
    pub fn decode(&self, log: &LogData) -> Option<Result<NamedEvent, String>> {
        let event = self.by_topic.get(log.topics().first()?)?;
        Some(
            event
                .decode_log(log)
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
                            args.insert(input.name.clone(), to_json(&value));
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
