//! Why a command failed, as an exit code a script can rely on and one line a person can read.

use std::fmt;

use alloy::{
    contract::Error as ContractError,
    sol_types::SolInterface,
    transports::{RpcError, TransportErrorKind},
};
use berth_bindings::{LeaseEscrow, ProviderRegistry, TestToken};

/// The class of a failure; its number is the process's exit code (documented in
/// `cli/README.md`; 2 is clap's usage error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A bug or an answer nobody planned for.
    Internal = 1,
    /// The input is wrong: a manifest, an amount, a key, a file.
    Input = 3,
    /// The RPC endpoint or a provider's gateway cannot be reached.
    Unreachable = 4,
    /// The RPC serves another chain than the one asked for, or no deployment is known for it.
    WrongChain = 5,
    /// No such lease or provider.
    NotFound = 6,
    /// The contracts' rules refuse it (checked before sending, or the call reverted).
    Refused = 7,
    /// The provider rejected the lease, or did not confirm it in time.
    NotDeployed = 8,
    /// A usage report does not match the provider's samples.
    Mismatch = 9,
}

/// A failure with its class.
#[derive(Debug)]
pub struct Failure {
    /// The class.
    pub kind: Kind,
    /// What went wrong, naming the bad value.
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// A failure of `kind` as an eyre report.
pub fn fail(kind: Kind, message: impl Into<String>) -> eyre::Report {
    eyre::Report::new(Failure {
        kind,
        message: message.into(),
    })
}

/// The exit code of a report: the first [`Failure`] in its chain, else a transport failure
/// seen as unreachable, else internal.
pub fn exit_code(report: &eyre::Report) -> i32 {
    for cause in report.chain() {
        if let Some(f) = cause.downcast_ref::<Failure>() {
            return f.kind as i32;
        }
    }
    Kind::Internal as i32
}

/// One line: the report's chain joined by `: `.
pub fn one_line(report: &eyre::Report) -> String {
    let parts: Vec<String> = report.chain().map(|c| c.to_string()).collect();
    parts.join(": ").replace('\n', " ")
}

/// The revert of a contract call in words (`InsufficientDeposit { deposit: 1, required: 2 }`),
/// if the call reverted with an error of the Berth contracts or the token.
pub fn revert_reason(e: &ContractError) -> Option<String> {
    fn inner<E: SolInterface + fmt::Debug>(e: &ContractError) -> Option<String> {
        let decoded = e.as_decoded_interface_error::<E>()?;
        // `Variant(Variant { .. })` → `Variant { .. }`
        let text = format!("{decoded:?}");
        Some(match (text.find('('), text.ends_with(')')) {
            (Some(open), true) => text[open + 1..text.len() - 1].to_owned(),
            _ => text,
        })
    }
    inner::<LeaseEscrow::LeaseEscrowErrors>(e)
        .or_else(|| inner::<ProviderRegistry::ProviderRegistryErrors>(e))
        .or_else(|| inner::<TestToken::TestTokenErrors>(e))
        .or_else(|| {
            e.as_revert_data()
                .map(|d| format!("reverted with data {d}"))
        })
}

/// Classifies a contract call's error: a revert is [`Kind::Refused`] with its decoded reason,
/// a dead transport is [`Kind::Unreachable`].
pub fn contract(what: &str, e: &ContractError) -> eyre::Report {
    if let Some(reason) = revert_reason(e) {
        return fail(
            Kind::Refused,
            format!("{what} refused by the contract: {reason}"),
        );
    }
    if let ContractError::TransportError(t) = e {
        return transport(what, t);
    }
    fail(Kind::Internal, format!("{what}: {e}"))
}

/// Classifies an RPC error: no answer at all is [`Kind::Unreachable`].
pub fn transport(what: &str, e: &RpcError<TransportErrorKind>) -> eyre::Report {
    match e {
        RpcError::Transport(kind) => fail(
            Kind::Unreachable,
            format!("{what}: cannot reach the RPC endpoint: {}", short(kind)),
        ),
        other => fail(Kind::Internal, format!("{what}: {other}")),
    }
}

/// The innermost cause of an error, where the useful words are ("Connection refused").
fn short(e: &dyn std::error::Error) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_failure_in_the_chain_sets_the_exit_code() {
        let r = fail(Kind::NotFound, "lease 9 does not exist").wrap_err("status");
        assert_eq!(exit_code(&r), 6);
        assert_eq!(one_line(&r), "status: lease 9 does not exist");
        assert_eq!(exit_code(&eyre::eyre!("plain")), 1);
    }
}
