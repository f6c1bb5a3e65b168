//! The podman engine's pure parts and its answers to a missing socket.

use super::*;

#[test]
fn url_encoding_keeps_unreserved_characters() {
    assert_eq!(url_encode("localhost/a:b"), "localhost%2Fa%3Ab");
    assert_eq!(url_encode("a-b_c.d~"), "a-b_c.d~");
}

#[test]
fn container_errors_in_a_200_are_a_refusal_and_only_5xx_an_outage() {
    let ok = br#"{"Pods":[{"ID":"p","Containers":["c"],"ContainerErrors":null}]}"#;
    assert!(play_verdict(StatusCode::OK, ok).is_ok());
    let bad = br#"{"Pods":[{"ID":"p","ContainerErrors":["starting container c: bind: address already in use"]}]}"#;
    let err = play_verdict(StatusCode::OK, bad).expect_err("container error");
    assert!(
        matches!(err, EngineError::Refused(ref m) if m.contains("address already in use")),
        "{err}"
    );
    assert!(matches!(
        play_verdict(StatusCode::BAD_REQUEST, b"{}"),
        Err(EngineError::Refused(_))
    ));
    let full = br#"{"Pods":[{"ID":"p","ContainerErrors":["starting container c: IPAM error: failed to find free IP in range: 10.89.0.1 - 10.89.0.254"]}]}"#;
    assert!(
        matches!(
            play_verdict(StatusCode::OK, full),
            Err(EngineError::Full(_))
        ),
        "a full pod network is the host's capacity"
    );
    assert!(matches!(
        play_verdict(StatusCode::INTERNAL_SERVER_ERROR, b"oops"),
        Err(EngineError::Unavailable(_))
    ));
}

#[tokio::test]
async fn a_missing_socket_is_unavailable_not_refused() {
    let engine = PodmanEngine::new(
        "/nonexistent/podman.sock",
        Duration::from_secs(1),
        Duration::from_secs(1),
    );
    let err = engine.list(1, Address::ZERO).await.expect_err("no socket");
    assert!(matches!(err, EngineError::Unavailable(_)), "{err}");
}
