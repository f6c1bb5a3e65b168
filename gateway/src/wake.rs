//! Scale to zero, the gateway's half: every app's open requests and upgraded connections and
//! the time since the last one ended ([`Activity`], read by the keeper to decide when an app
//! sleeps), and the wake of an app that sleeps: the first request of a sleep asks the keeper
//! once to start it, every request that arrives meanwhile waits on that one wake, and all are
//! forwarded as soon as the app accepts connections, or answered 503 when the budget runs out.

use std::{
    path::PathBuf,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use berth_protocol::routing::{WakeRequest, admin};
use bytes::Bytes;
use http_body_util::Full;

/// Milliseconds since the gateway started (a monotonic clock shared by every worker).
pub fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    u64::try_from(START.get_or_init(Instant::now).elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// One app's open work and idle clock; it outlives route tables (the keeper replaces the
/// table whenever any lease changes, which must not reset anyone's idle time).
#[derive(Debug)]
pub struct Activity {
    open: AtomicU64,
    last_ms: AtomicU64,
    /// The last sleep a wake finished for (checked without a lock by every request).
    woken: AtomicU64,
    /// Held by the one request that wakes the app; the others wait on it.
    waking: tokio::sync::Mutex<()>,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            open: AtomicU64::new(0),
            last_ms: AtomicU64::new(now_ms()),
            woken: AtomicU64::new(0),
            waking: tokio::sync::Mutex::new(()),
        }
    }
}

impl Activity {
    /// Counts one request or connection as open until the guard drops.
    pub fn busy(self: &Arc<Self>) -> Busy {
        self.open.fetch_add(1, Ordering::Relaxed);
        Busy(Arc::clone(self))
    }

    /// (open now, milliseconds idle).
    pub fn read(&self) -> (u64, u64) {
        let open = self.open.load(Ordering::Relaxed);
        let idle = if open > 0 {
            0
        } else {
            now_ms().saturating_sub(self.last_ms.load(Ordering::Relaxed))
        };
        (open, idle)
    }
}

/// An open request or connection of an app.
#[derive(Debug)]
pub struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.last_ms.store(now_ms(), Ordering::Relaxed);
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why a held request could not be forwarded.
#[derive(Debug, thiserror::Error)]
pub enum WakeError {
    #[error("no keeper socket is configured")]
    NoKeeper,
    #[error("the keeper did not wake the app: {0}")]
    Keeper(String),
    #[error("the app did not start within {0:?}")]
    Timeout(Duration),
}

/// How a wake went for one request.
#[derive(Debug, Clone, Copy)]
pub struct Woken {
    /// How long the request was held.
    pub held: Duration,
    /// This request asked the keeper (the others waited on it).
    pub waker: bool,
}

/// Wakes apps through the keeper's control socket.
#[derive(Debug, Clone)]
pub struct Waker {
    /// The keeper's control socket.
    pub keeper_socket: Option<PathBuf>,
    /// The most a request is held.
    pub budget: Duration,
}

impl Waker {
    /// Makes sure the app of `activity`, asleep in sleep `sleep`, runs and accepts connections
    /// at `upstream`; at most one keeper call per sleep whatever the number of requests.
    pub async fn wake(
        &self,
        activity: &Activity,
        sleep: u64,
        lease: alloy_primitives::U256,
        service: &str,
        upstream: &str,
    ) -> Result<Woken, WakeError> {
        if activity.woken.load(Ordering::Acquire) == sleep {
            return Ok(Woken {
                held: Duration::ZERO,
                waker: false,
            });
        }
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + self.budget;
        let work = async {
            let _one = activity.waking.lock().await;
            if activity.woken.load(Ordering::Acquire) == sleep {
                return Ok(false);
            }
            self.ask_keeper(lease, service).await?;
            accepting(upstream).await;
            activity.woken.store(sleep, Ordering::Release);
            Ok(true)
        };
        match tokio::time::timeout_at(deadline, work).await {
            Ok(Ok(waker)) => Ok(Woken {
                held: started.elapsed(),
                waker,
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(WakeError::Timeout(self.budget)),
        }
    }

    async fn ask_keeper(
        &self,
        lease: alloy_primitives::U256,
        service: &str,
    ) -> Result<(), WakeError> {
        let socket = self.keeper_socket.as_ref().ok_or(WakeError::NoKeeper)?;
        let body = serde_json::to_vec(&WakeRequest {
            lease,
            service: service.to_owned(),
        })
        .map_err(|e| WakeError::Keeper(e.to_string()))?;
        let req = http::Request::builder()
            .method(http::Method::POST)
            .uri(format!("http://keeper{}", admin::WAKE))
            .header(http::header::HOST, "keeper")
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| WakeError::Keeper(e.to_string()))?;
        let (status, body) = berth_runtime::http::unix_call(socket, req, self.budget)
            .await
            .map_err(|e| WakeError::Keeper(e.to_string()))?;
        if !status.is_success() {
            let text: String = String::from_utf8_lossy(&body).chars().take(300).collect();
            return Err(WakeError::Keeper(format!("{status}: {text}")));
        }
        Ok(())
    }
}

/// Returns once `upstream` accepts a TCP connection (the caller bounds the wait).
async fn accepting(upstream: &str) {
    let mut pause = Duration::from_millis(5);
    loop {
        if tokio::net::TcpStream::connect(upstream).await.is_ok() {
            return;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn open_work_holds_the_idle_clock_at_zero() {
        let a = Arc::new(Activity::default());
        let one = a.busy();
        let two = a.busy();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(a.read(), (2, 0));
        drop(one);
        assert_eq!(a.read().0, 1);
        drop(two);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let (open, idle) = a.read();
        assert_eq!(open, 0);
        assert!((15..1000).contains(&idle), "{idle}");
    }

    #[tokio::test]
    async fn concurrent_requests_share_one_wake_and_time_out_with_a_reason() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let upstream = listener.local_addr().expect("addr").to_string();
        // A fake keeper on a socket: counts wakes.
        let dir = std::env::temp_dir().join(format!("berth-wake-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let socket = dir.join("keeper.sock");
        let _ = std::fs::remove_file(&socket);
        let keeper = tokio::net::UnixListener::bind(&socket).expect("socket");
        let calls = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&calls);
        tokio::spawn(async move {
            while let Ok((stream, _)) = keeper.accept().await {
                let counted = Arc::clone(&counted);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |_req| {
                        counted.fetch_add(1, Ordering::SeqCst);
                        async {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                                Bytes::from_static(b"{}"),
                            )))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        let waker = Waker {
            keeper_socket: Some(socket),
            budget: Duration::from_secs(5),
        };
        let activity = Arc::new(Activity::default());
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let (waker, activity, upstream) =
                    (waker.clone(), Arc::clone(&activity), upstream.clone());
                tokio::spawn(async move {
                    waker
                        .wake(
                            &activity,
                            7,
                            alloy_primitives::U256::from(1),
                            "web",
                            &upstream,
                        )
                        .await
                })
            })
            .collect();
        let mut wakers = 0;
        for t in tasks {
            let woken = t.await.expect("task").expect("woken");
            wakers += usize::from(woken.waker);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1, "one keeper call");
        assert_eq!(wakers, 1);
        // A later sleep wakes again; an app that never listens runs out the budget.
        drop(listener);
        let short = Waker {
            budget: Duration::from_millis(300),
            ..waker
        };
        let e = short
            .wake(
                &activity,
                8,
                alloy_primitives::U256::from(1),
                "web",
                &upstream,
            )
            .await
            .expect_err("nothing listens");
        assert!(matches!(e, WakeError::Timeout(_)), "{e}");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        let none = Waker {
            keeper_socket: None,
            budget: Duration::from_secs(1),
        };
        assert!(matches!(
            none.wake(
                &activity,
                9,
                alloy_primitives::U256::from(1),
                "web",
                &upstream
            )
            .await,
            Err(WakeError::NoKeeper)
        ));
        let _ = std::fs::remove_dir_all(dir);
    }
}
