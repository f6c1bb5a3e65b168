//! Decoding raw logs of the watched contracts into named events.
//!
//! The event tables come from the same compiled artifacts the typed bindings are generated
//! from (`berth_bindings::artifacts`), so every event of both contracts decodes, including
//! ones added later, and an unknown or malformed log is reported instead of crashing.

use alloy::primitives::{Address, B256, LogData};

use crate::abi::{EventTable, NamedEvent};

/// Which Berth contract emitted a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contract {
    /// `ProviderRegistry`.
    Registry,
    /// `LeaseEscrow`.
    Escrow,
}

impl Contract {
    /// The name stored in `berth.events.contract`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Registry => "registry",
            Self::Escrow => "escrow",
        }
    }
}

/// Why a log could not be decoded; the indexer records it and carries on.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The log comes from an address the indexer does not watch.
    #[error("log from unwatched address {0}")]
    UnwatchedAddress(Address),
    /// The log has no topic 0, so it names no event.
    #[error("anonymous log (no topic) from {0}")]
    Anonymous(Address),
    /// Topic 0 names no event of the contract at that address.
    #[error("unknown event {topic} from {address}")]
    UnknownEvent {
        /// The emitting contract.
        address: Address,
        /// The unknown event signature hash.
        topic: B256,
    },
    /// Topic 0 names a known event but its topics or data do not decode.
    #[error("undecodable {topic} from {address}: {reason}")]
    Undecodable {
        /// The emitting contract.
        address: Address,
        /// The event signature hash.
        topic: B256,
        /// What the decoder said.
        reason: String,
    },
}

/// The addresses whose logs are decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watched {
    /// `ProviderRegistry`.
    pub registry: Address,
    /// `LeaseEscrow`.
    pub escrow: Address,
}

/// Decodes logs of the two watched contracts.
#[derive(Debug, Clone)]
pub struct Decoder {
    watched: Watched,
    registry: EventTable,
    escrow: EventTable,
}

impl Decoder {
    /// A decoder for the contracts at `watched`.
    pub fn new(watched: Watched) -> Self {
        let table = |artifact: &str| {
            EventTable::from_artifact(artifact).unwrap_or_else(|e| {
                // The artifacts are compiled into the binary and checked by the test suite.
                unreachable!("embedded artifact does not parse: {e}")
            })
        };
        Self {
            watched,
            registry: table(berth_bindings::artifacts::PROVIDER_REGISTRY),
            escrow: table(berth_bindings::artifacts::LEASE_ESCROW),
        }
    }

    /// The addresses this decoder watches.
    pub fn watched(&self) -> Watched {
        self.watched
    }

    /// Decodes one raw log (address, topics, data).
    pub fn decode(
        &self,
        address: Address,
        data: &LogData,
    ) -> Result<(Contract, NamedEvent), DecodeError> {
        let topic = *data
            .topics()
            .first()
            .ok_or(DecodeError::Anonymous(address))?;
        let (contract, table) = if address == self.watched.registry {
            (Contract::Registry, &self.registry)
        } else if address == self.watched.escrow {
            (Contract::Escrow, &self.escrow)
        } else {
            return Err(DecodeError::UnwatchedAddress(address));
        };
        match table.decode(data) {
            None => Err(DecodeError::UnknownEvent { address, topic }),
            Some(Err(reason)) => Err(DecodeError::Undecodable {
                address,
                topic,
                reason,
            }),
            Some(Ok(event)) => Ok((contract, event)),
        }
    }
}

#[cfg(test)]
mod tests {
    use alloy::{
        primitives::{U256, address, b256},
        sol_types::SolEvent,
    };
    use berth_bindings::LeaseEscrow;

    use super::*;

    const WATCHED: Watched = Watched {
        registry: address!("0x00000000000000000000000000000000000000aa"),
        escrow: address!("0x00000000000000000000000000000000000000bb"),
    };

    fn closed_event() -> LeaseEscrow::LeaseClosed {
        LeaseEscrow::LeaseClosed {
            leaseId: U256::from(7),
            providerId: U256::from(2),
            tenant: address!("0x00000000000000000000000000000000000000cc"),
            reason: 2,
            closedAt: U256::MAX,
        }
    }

    #[test]
    fn decodes_an_escrow_event_with_named_arguments() {
        let decoder = Decoder::new(WATCHED);
        let (contract, event) = decoder
            .decode(WATCHED.escrow, &closed_event().encode_log_data())
            .expect("decodes");
        assert_eq!(contract, Contract::Escrow);
        assert_eq!(event.name, "LeaseClosed");
        assert_eq!(event.args["leaseId"], "7");
        assert_eq!(event.args["reason"], "2");
        assert_eq!(
            event.args["tenant"],
            closed_event().tenant.to_checksum(None),
            "addresses in their checksummed form"
        );
        assert_eq!(
            event.args["closedAt"],
            U256::MAX.to_string(),
            "uint256 survives as a decimal string"
        );
    }

    #[test]
    fn the_same_log_from_the_registry_is_an_unknown_event() {
        let decoder = Decoder::new(WATCHED);
        let err = decoder
            .decode(WATCHED.registry, &closed_event().encode_log_data())
            .expect_err("not a registry event");
        assert!(matches!(err, DecodeError::UnknownEvent { .. }), "{err}");
    }

    #[test]
    fn truncated_data_is_undecodable_not_a_panic() {
        let decoder = Decoder::new(WATCHED);
        let data = closed_event().encode_log_data();
        let data = LogData::new_unchecked(data.topics().to_vec(), data.data.slice(..10));
        let err = decoder
            .decode(WATCHED.escrow, &data)
            .expect_err("truncated");
        assert!(matches!(err, DecodeError::Undecodable { .. }), "{err}");
    }

    #[test]
    fn anonymous_and_foreign_logs_are_reported() {
        let decoder = Decoder::new(WATCHED);
        let foreign = address!("0x00000000000000000000000000000000000000dd");
        let data = closed_event().encode_log_data();
        assert_eq!(
            decoder.decode(foreign, &data),
            Err(DecodeError::UnwatchedAddress(foreign))
        );
        let anonymous = LogData::new_unchecked(vec![], Default::default());
        assert_eq!(
            decoder.decode(WATCHED.escrow, &anonymous),
            Err(DecodeError::Anonymous(WATCHED.escrow))
        );
        let unknown = LogData::new_unchecked(
            vec![b256!(
                "0x1111111111111111111111111111111111111111111111111111111111111111"
            )],
            Default::default(),
        );
        assert!(matches!(
            decoder.decode(WATCHED.escrow, &unknown),
            Err(DecodeError::UnknownEvent { .. })
        ));
    }
}
