//! Who may read a lease's logs and events or open a shell: the holder of a fresh access token
//! ([`berth_protocol::access`]) signed by the lease's tenant (an EOA, or a contract wallet
//! that accepts the signature by ERC-1271).

use alloy::primitives::{Address, U256};
use axum::{
    Json,
    http::{HeaderMap, StatusCode, header::AUTHORIZATION},
    response::{IntoResponse, Response},
};
use berth_protocol::{
    access::{AccessError, Operation, QUERY, Token},
    api::ApiError,
};

use crate::{chain::LeaseView, gateway::Gateway};

/// Why a request is refused: the status and what to tell the client.
pub type Refusal = (StatusCode, String);

/// An error answer: the status and `{"error": message}`.
pub fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(ApiError {
            error: message.into(),
        }),
    )
        .into_response()
}

/// The lease `raw` names, when it is this provider's and the request carries its tenant's
/// token for `operation`; with the tenant. Else the answer to send.
pub async fn authorized_lease(
    g: &Gateway,
    raw: &str,
    operation: Operation,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<(LeaseView, Address), Response> {
    let Ok(id) = raw.parse::<U256>() else {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            format!("`{raw}` is not a lease id"),
        ));
    };
    let lease = crate::gateway::lease_of_provider(g, id)
        .await
        .map_err(|r| *r)?;
    let who = authorize(g, &lease, operation, headers, query)
        .await
        .map_err(|(status, why)| refuse(status, why))?;
    Ok((lease, who))
}

/// The token of a request: the `Authorization` header, else the `access` query parameter.
fn token(headers: &HeaderMap, query: Option<&str>) -> Result<Token, AccessError> {
    if let Some(value) = headers.get(AUTHORIZATION) {
        let text = value
            .to_str()
            .map_err(|_| AccessError::Missing("the Authorization header is not text".into()))?;
        return Token::from_header(text);
    }
    let from_query = query.and_then(|q| {
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == QUERY)
            .map(|(_, v)| v.replace("%2E", ".").replace("%2e", "."))
    });
    match from_query {
        Some(t) => Token::decode(&t),
        None => Err(AccessError::Missing("none was sent".into())),
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The tenant, when the request carries a token of theirs for `operation` of `lease`.
pub async fn authorize(
    g: &Gateway,
    lease: &LeaseView,
    operation: Operation,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Address, Refusal> {
    let unauthorized = |e: AccessError| (StatusCode::UNAUTHORIZED, e.to_string());
    let token = token(headers, query).map_err(unauthorized)?;
    let id: U256 = lease.id;
    match token.verify(
        g.chain_id,
        g.chain.escrow(),
        id,
        operation,
        lease.tenant,
        now(),
    ) {
        Ok(tenant) => Ok(tenant),
        Err(AccessError::NotTenant { signer }) => {
            // A contract wallet answers for itself.
            let digest = berth_protocol::access::signing_hash(
                g.chain_id,
                g.chain.escrow(),
                id,
                operation,
                token.expires_at,
            );
            let unavailable =
                |e: crate::chain::ChainError| (StatusCode::SERVICE_UNAVAILABLE, e.to_string());
            if g.chain.has_code(lease.tenant).await.map_err(unavailable)?
                && g.chain
                    .erc1271_valid(
                        lease.tenant,
                        digest,
                        token.signature.as_bytes().to_vec().into(),
                    )
                    .await
                    .map_err(unavailable)?
            {
                return Ok(lease.tenant);
            }
            Err((
                StatusCode::FORBIDDEN,
                AccessError::NotTenant { signer }.to_string(),
            ))
        }
        Err(e) => Err(unauthorized(e)),
    }
}
