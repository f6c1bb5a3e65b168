//! Decoding raw logs of the watched contracts into typed Berth events.

use alloy::{
    primitives::{Address, B256, Log, LogData},
    sol_types::SolEventInterface,
};
use berth_bindings::{LeaseEscrow::LeaseEscrowEvents, ProviderRegistry::ProviderRegistryEvents};

/// A decoded event of one of the two Berth contracts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BerthEvent {
    /// An event of `ProviderRegistry`.
    Registry(ProviderRegistryEvents),
    /// An event of `LeaseEscrow`.
    Escrow(LeaseEscrowEvents),
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

impl Watched {
    /// Decodes one raw log (address, topics, data) into a typed event.
    pub fn decode(&self, address: Address, data: &LogData) -> Result<BerthEvent, DecodeError> {
        let topic = *data
            .topics()
            .first()
            .ok_or(DecodeError::Anonymous(address))?;
        let log = Log {
            address,
            data: data.clone(),
        };
        if address == self.registry {
            decode_with::<ProviderRegistryEvents>(&log, topic).map(BerthEvent::Registry)
        } else if address == self.escrow {
            decode_with::<LeaseEscrowEvents>(&log, topic).map(BerthEvent::Escrow)
        } else {
            Err(DecodeError::UnwatchedAddress(address))
        }
    }
}

/// The event signature hashes a generated events enum knows.
trait KnownEvents: SolEventInterface {
    fn selectors() -> &'static [[u8; 32]];
}

impl KnownEvents for ProviderRegistryEvents {
    fn selectors() -> &'static [[u8; 32]] {
        Self::SELECTORS
    }
}

impl KnownEvents for LeaseEscrowEvents {
    fn selectors() -> &'static [[u8; 32]] {
        Self::SELECTORS
    }
}

fn decode_with<E: KnownEvents>(log: &Log, topic: B256) -> Result<E, DecodeError> {
    if !E::selectors().contains(&topic.0) {
        return Err(DecodeError::UnknownEvent {
            address: log.address,
            topic,
        });
    }
    E::decode_log(log)
        .map(|decoded| decoded.data)
        .map_err(|e| DecodeError::Undecodable {
            address: log.address,
            topic,
            reason: e.to_string(),
        })
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
            closedAt: U256::from(1_700_000_000u64),
        }
    }

    #[test]
    fn decodes_an_escrow_event_from_its_raw_log() {
        let event = closed_event();
        let decoded = WATCHED
            .decode(WATCHED.escrow, &event.encode_log_data())
            .expect("decodes");
        assert_eq!(
            decoded,
            BerthEvent::Escrow(LeaseEscrowEvents::LeaseClosed(event))
        );
    }

    #[test]
    fn the_same_log_from_the_registry_is_an_unknown_event() {
        let data = closed_event().encode_log_data();
        let err = WATCHED
            .decode(WATCHED.registry, &data)
            .expect_err("not a registry event");
        assert!(matches!(err, DecodeError::UnknownEvent { .. }), "{err}");
    }

    #[test]
    fn truncated_data_is_undecodable_not_a_panic() {
        let mut data = closed_event().encode_log_data();
        data = LogData::new_unchecked(data.topics().to_vec(), data.data.slice(..10));
        let err = WATCHED
            .decode(WATCHED.escrow, &data)
            .expect_err("truncated");
        assert!(matches!(err, DecodeError::Undecodable { .. }), "{err}");
    }

    #[test]
    fn anonymous_and_foreign_logs_are_reported() {
        let foreign = address!("0x00000000000000000000000000000000000000dd");
        let data = closed_event().encode_log_data();
        assert_eq!(
            WATCHED.decode(foreign, &data),
            Err(DecodeError::UnwatchedAddress(foreign))
        );
        let anonymous = LogData::new_unchecked(vec![], Default::default());
        assert_eq!(
            WATCHED.decode(WATCHED.escrow, &anonymous),
            Err(DecodeError::Anonymous(WATCHED.escrow))
        );
        let unknown = LogData::new_unchecked(
            vec![b256!(
                "0x1111111111111111111111111111111111111111111111111111111111111111"
            )],
            Default::default(),
        );
        assert!(matches!(
            WATCHED.decode(WATCHED.escrow, &unknown),
            Err(DecodeError::UnknownEvent { .. })
        ));
    }
}
