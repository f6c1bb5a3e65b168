//! `GET /v1/leases/{id}/events?after=<seq>&limit=<n>`: a lease's event feed, for its tenant
//! (an access token for `events`, [`crate::access`]), oldest first.

use std::sync::Arc;

use axum::{
    Json,
    extract::{Path, Query, RawQuery, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use berth_protocol::{access::Operation, api::EventsAnswer};
use serde::Deserialize;

use crate::{
    access::{authorized_lease, refuse},
    gateway::Gateway,
    store::events::MAX_EVENTS,
};

/// The query.
#[derive(Debug, Deserialize)]
pub struct EventsParams {
    #[serde(default)]
    after: i64,
    limit: Option<i64>,
}

/// The handler.
pub async fn events(
    State(g): State<Arc<Gateway>>,
    Path(raw): Path<String>,
    query: Result<Query<EventsParams>, axum::extract::rejection::QueryRejection>,
    RawQuery(raw_query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let Query(params) = match query {
        Ok(q) => q,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let (lease, _) =
        match authorized_lease(&g, &raw, Operation::Events, &headers, raw_query.as_deref()).await {
            Ok(found) => found,
            Err(response) => return response,
        };
    let id = lease.id;
    match g
        .store
        .events(id, params.after, params.limit.unwrap_or(MAX_EVENTS))
        .await
    {
        Ok(events) => Json(EventsAnswer { lease: id, events }).into_response(),
        Err(e) => refuse(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}
