//! A running node: the event loop that owns the [`Runtime`], the peer transport, and the HTTP API.
//!
//! One task owns the core. It takes, in priority order (`select! { biased; .. }`): shutdown, peer
//! messages (every one already waiting, as one batch with one fsync), API requests, and the
//! core's timer. Sends go to the per-peer queues, replies to the HTTP requests waiting on them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use keel_core::{
    ClientError, ClientOp, ClientRequest, ClientResponse, ClientResult, Config, Input, Key,
    Message, NodeId, Partition, RequestId, Write,
};
use serde_json::{json, Value as JsonValue};
use tokio::sync::{mpsc, oneshot};

use crate::config::ShutdownConfig;
use crate::metrics::Metrics;
use crate::net::{HttpListener, Net, TokioNet};
use crate::runtime::{Runtime, RuntimeError};
use crate::storage::StorageOptions;
use crate::supervisor::{Supervisor, SupervisorConfig};
use crate::transport::{self, Outbound, TransportConfig};
use crate::watchdog::{self, WatchdogConfig};

/// Everything needed to start a node.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    pub id: NodeId,
    /// Where peers connect.
    pub listen: SocketAddr,
    /// Where the HTTP API listens.
    pub http: SocketAddr,
    /// Every other member and its peer address.
    pub peers: BTreeMap<NodeId, SocketAddr>,
    pub data_dir: PathBuf,
    pub transport: TransportConfig,
    /// Overrides of the core's defaults (the `[core]` table of `--config`).
    pub core: BTreeMap<String, toml::Value>,
    pub supervisor: SupervisorConfig,
    /// The apoptosis watchdog; `None` runs without one (nodes inside a test process, where
    /// ending the process would end every test).
    pub watchdog: Option<WatchdogConfig>,
    pub shutdown: ShutdownConfig,
    pub storage: StorageOptions,
    /// The seed of the node's random choices (election and reconnect jitter); `None` takes one
    /// from the wall clock. A simulation fixes it so that a run repeats.
    pub seed: Option<u64>,
}

impl NodeSpec {
    /// A node with every setting at its default.
    pub fn new(
        id: NodeId,
        listen: SocketAddr,
        http: SocketAddr,
        peers: BTreeMap<NodeId, SocketAddr>,
        data_dir: PathBuf,
    ) -> NodeSpec {
        NodeSpec {
            id,
            listen,
            http,
            peers,
            data_dir,
            transport: TransportConfig::default(),
            core: BTreeMap::new(),
            supervisor: SupervisorConfig::default(),
            watchdog: Some(WatchdogConfig::default()),
            shutdown: ShutdownConfig::default(),
            storage: StorageOptions::default(),
            seed: None,
        }
    }
}

/// Why a node stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigFileError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot prepare the workload directory under {dir}: {source}")]
    Workloads {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The cluster as this node sees it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ClusterInfo {
    pub node: String,
    pub leader: Option<String>,
    pub term: u64,
    pub commit_index: u64,
    pub members: Vec<String>,
}

/// The node's API in the same process: the operations the HTTP API carries, without HTTP (tests,
/// and under madsim, where the HTTP server does not run). Clones share the node; every call
/// answers `None` once the node has stopped.
#[derive(Clone, Debug)]
pub struct ApiHandle(mpsc::Sender<ApiRequest>);

/// The node's end of an [`ApiHandle`], for [`run_with_api`].
#[derive(Debug)]
pub struct ApiInbox {
    tx: mpsc::Sender<ApiRequest>,
    rx: mpsc::Receiver<ApiRequest>,
}

/// A new in-process API: the handle for callers, the inbox for [`run_with_api`].
pub fn api_channel() -> (ApiHandle, ApiInbox) {
    let (tx, rx) = mpsc::channel::<ApiRequest>(1024);
    (ApiHandle(tx.clone()), ApiInbox { tx, rx })
}

impl ApiHandle {
    /// Carries out `op` as a client request to this node (forwarded or redirected as over
    /// HTTP); `None` if the node stopped before it answered.
    pub async fn op(&self, op: ClientOp) -> Option<ClientResult> {
        let (reply, rx) = oneshot::channel();
        self.0.send(ApiRequest::Op { op, reply }).await.ok()?;
        rx.await.ok()
    }

    /// The cluster as this node sees it (`GET /v1/cluster`).
    pub async fn cluster(&self) -> Option<ClusterInfo> {
        let (reply, rx) = oneshot::channel();
        self.0.send(ApiRequest::Cluster { reply }).await.ok()?;
        rx.await.ok()
    }

    /// This node's metrics in Prometheus text format (`GET /metrics`).
    pub async fn metrics(&self) -> Option<String> {
        let (reply, rx) = oneshot::channel();
        self.0.send(ApiRequest::Metrics { reply }).await.ok()?;
        rx.await.ok()
    }
}

#[derive(Debug)]
enum ApiRequest {
    Op {
        op: ClientOp,
        reply: oneshot::Sender<ClientResult>,
    },
    Cluster {
        reply: oneshot::Sender<ClusterInfo>,
    },
    Metrics {
        reply: oneshot::Sender<String>,
    },
    /// Hand leadership over; answered with the leader (hint) if this node does not lead.
    Transfer {
        to: Option<NodeId>,
        reply: oneshot::Sender<Result<(), Option<NodeId>>>,
    },
}

/// Runs the node until `shutdown` resolves; then, if it leads, it hands leadership to a
/// caught-up follower (waiting at most `shutdown.transfer_wait`), stops its workloads and
/// returns. Every step's log writes were synced before its effects left, so there is nothing
/// left to flush.
pub async fn run(
    spec: NodeSpec,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServerError> {
    run_on::<TokioNet>(spec, shutdown).await
}

/// [`run`] on the network `N`: the same loop, transport and HTTP API over any [`Net`] (a
/// simulated one in tests). All of the loop's time comes from tokio's clock, so a runtime with
/// a paused or simulated clock drives it.
pub async fn run_on<N: Net>(
    spec: NodeSpec,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServerError> {
    run_with_api::<N>(spec, shutdown, api_channel().1).await
}

/// [`run_on`], also taking requests from the [`ApiHandle`] of `api`. Under `--cfg madsim` this
/// is the node's only API: axum's server spawns its connections onto the real tokio runtime,
/// which a madsim simulation does not have, so there the node serves no HTTP.
pub async fn run_with_api<N: Net>(
    spec: NodeSpec,
    shutdown: impl std::future::Future<Output = ()>,
    api: ApiInbox,
) -> Result<(), ServerError> {
    let mut members: Vec<NodeId> = spec.peers.keys().copied().collect();
    members.push(spec.id);
    members.sort();
    let seed = node_seed(spec.seed.unwrap_or_else(clock_seed), spec.id);
    let mut cfg = Config::new(spec.id, members.clone(), seed);
    crate::config::apply_core(&mut cfg, &spec.core)?;
    let clock = tokio::time::Instant::now();
    let now = |clock: tokio::time::Instant| keel_core::Instant(clock.elapsed().as_micros() as u64);
    let (mut rt, recovery) = Runtime::open_with(cfg, &spec.data_dir, spec.storage, now(clock))?;
    if let Some((at, len)) = recovery.truncated_tail {
        tracing::warn!(offset = at, bytes = len, "cut a torn tail off the log");
    }
    tracing::info!(node = %spec.id, records = recovery.records, "recovered");
    let (mut supervisor, mut workload_events) =
        Supervisor::new(spec.supervisor.clone(), &spec.data_dir).map_err(|source| {
            ServerError::Workloads {
                dir: spec.data_dir.clone(),
                source,
            }
        })?;

    let peer_listener = N::bind(spec.listen)
        .await
        .map_err(|source| ServerError::Bind {
            addr: spec.listen,
            source,
        })?;
    let http_listener = bind_http::<N>(spec.http).await?;
    let (inbound_tx, mut inbound) = mpsc::channel::<Message>(4096);
    let outbound = Outbound::start::<N>(spec.id, &spec.peers, &spec.transport, seed);
    let _listener = AbortOnDrop(tokio::spawn(transport::listen::<N>(
        peer_listener,
        spec.id,
        members.clone(),
        spec.transport.clone(),
        inbound_tx,
        outbound.handshakes(),
    )));
    let ApiInbox {
        tx: api_tx,
        rx: mut api,
    } = api;
    let mut http = http_listener.map(|l| AbortOnDrop(tokio::spawn(serve_http::<N>(l, api_tx))));
    let id = spec.id;
    let pulse = spec.watchdog.clone().map(|w| {
        watchdog::start(w, move |stalled| {
            tracing::error!(node = %id, ?stalled,
                "the event loop made no progress; exiting so that the cluster sees a crash, not a zombie");
            std::process::exit(watchdog::EXIT_STALLED);
        })
    });

    let mut waiting: BTreeMap<RequestId, oneshot::Sender<ClientResult>> = BTreeMap::new();
    // Arrival times of writes, for the commit latency histogram.
    let mut arrived: BTreeMap<RequestId, tokio::time::Instant> = BTreeMap::new();
    let mut metrics = Metrics::default();
    let mut next_id = 1u64;
    // Set once shutdown began while leading: leave when leadership moved, or at this instant.
    let mut leaving: Option<tokio::time::Instant> = None;
    tokio::pin!(shutdown);
    // The core's timer: one `Sleep`, moved only when the core's deadline moves. A new `Sleep`
    // per turn of the loop costs a timer-wheel insertion each time, and one inserted after the
    // runtime polled its driver with no timer pending (the loop let the peer writers run with
    // the previous `Sleep` already dropped) makes tokio wake its own driver: a syscall per write.
    let timer = tokio::time::sleep_until(clock);
    tokio::pin!(timer);
    let result = loop {
        if let Some(p) = &pulse {
            p.beat();
        }
        if let Some(at) = leaving {
            if !rt.node().is_leader() || tokio::time::Instant::now() >= at {
                break Ok(());
            }
        }
        let deadline = rt.next_deadline().0;
        let wake = clock + Duration::from_micros(deadline.min(u64::MAX / 4));
        if timer.deadline() != wake {
            timer.as_mut().reset(wake);
        }
        let leave_at = leaving;
        let gated = tokio::select! {
            biased;
            () = &mut shutdown, if leaving.is_none() => {
                tracing::info!(node = %spec.id, "shutting down");
                http = None; // stop taking API requests
                if !rt.node().is_leader() {
                    break Ok(());
                }
                tracing::info!(node = %spec.id, "handing leadership over before leaving");
                leaving = Some(tokio::time::Instant::now() + spec.shutdown.transfer_wait);
                rt.step_gated(now(clock), [Input::TransferLeadership { to: None }])
            }
            Some(ev) = workload_events.recv() => {
                let mut batch = vec![Input::Workload(ev)];
                while let Ok(ev) = workload_events.try_recv() {
                    batch.push(Input::Workload(ev));
                }
                rt.step_gated(now(clock), batch)
            }
            Some(m) = inbound.recv() => {
                let mut batch = vec![Input::Message(m)];
                while batch.len() < 256 {
                    match inbound.try_recv() {
                        Ok(m) => batch.push(Input::Message(m)),
                        Err(_) => break,
                    }
                }
                rt.step_gated(now(clock), batch)
            }
            Some(req) = api.recv() => {
                // Every request already waiting goes into one step: one fsync for all of them.
                let mut batch = Vec::new();
                let mut next = Some(req);
                while let Some(req) = next.take() {
                    match req {
                        ApiRequest::Op { op, reply } => {
                            let id = RequestId(next_id);
                            next_id += 1;
                            waiting.insert(id, reply);
                            if op.proposes() {
                                arrived.insert(id, tokio::time::Instant::now());
                            }
                            batch.push(Input::Client(ClientRequest { id, op }));
                        }
                        ApiRequest::Cluster { reply } => {
                            let n = rt.node();
                            let _ = reply.send(ClusterInfo {
                                node: n.id().to_string(),
                                leader: n.leader().map(|l| l.to_string()),
                                term: n.term().0,
                                commit_index: n.commit_index().0,
                                members: members.iter().map(|m| m.to_string()).collect(),
                            });
                        }
                        ApiRequest::Metrics { reply } => {
                            let n = rt.node();
                            metrics.term = n.term().0;
                            metrics.commit_index = n.commit_index().0;
                            metrics.is_leader = n.is_leader();
                            metrics.workloads_running = supervisor.running();
                            metrics.dropped_messages = outbound.dropped();
                            let _ = reply.send(metrics.render(&spec.id.to_string()));
                        }
                        ApiRequest::Transfer { to, reply } => {
                            if rt.node().is_leader() {
                                let _ = reply.send(Ok(()));
                                batch.push(Input::TransferLeadership { to });
                            } else {
                                let _ = reply.send(Err(rt.node().leader()));
                            }
                        }
                    }
                    if batch.len() < 256 {
                        next = api.try_recv().ok();
                    }
                }
                if batch.is_empty() {
                    continue;
                }
                rt.step_gated(now(clock), batch)
            }
            () = &mut timer => rt.step_gated(now(clock), [Input::Tick]),
            () = async move {
                match leave_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => continue,
        };
        // Group commit: nothing of the step leaves before its fsync is done. A leader's
        // AppendEntries go first (see `Gated::take_early`): the loop yields once so that the
        // peer writers put them on the wire, and the followers write while this node writes
        // and syncs. The write and the fsync run right here: the loop has nothing to do before
        // they return, and a hand-over to a blocking thread and back costs two thread wake-ups
        // per write (on a loaded machine, more than the fsync itself). Messages and requests
        // arriving meanwhile wait in their sockets and channels.
        let effects = match gated {
            Ok(mut g) => {
                let early = g.take_early();
                if !early.is_empty() {
                    for m in early {
                        outbound.send(m);
                    }
                    let_other_tasks_run().await;
                }
                g.wait()
            }
            Err(e) => Err(e),
        };
        let effects = match effects {
            Ok(e) => e,
            Err(e) => break Err(ServerError::from(e)),
        };
        for m in effects.sends {
            outbound.send(m);
        }
        for r in effects.replies {
            if let Some(at) = arrived.remove(&r.id) {
                if r.result.is_ok() {
                    metrics.commit_latency.observe(at.elapsed());
                }
            }
            if let Some(w) = waiting.remove(&r.id) {
                let _ = w.send(r.result);
            }
        }
        for e in effects.events {
            metrics.event(&e);
            if matches!(e, keel_core::Event::Committed { .. }) {
                // One per commit: too many for the default log.
                tracing::debug!(node = %spec.id, event = ?e, "core");
            } else {
                tracing::info!(node = %spec.id, event = ?e, "core");
            }
        }
        let t = now(clock);
        for a in effects.workload {
            supervisor.apply(t, a);
        }
        metrics.observe(rt.node());
    };
    drop(http);
    supervisor.stop_all();
    result
}

/// Lets every task already woken run before this one goes on: this task wakes itself and
/// returns `Pending` once, which puts it behind them in the run queue. (Tokio's `yield_now`
/// instead defers the wake-up until the runtime has polled its I/O driver: a syscall.)
fn let_other_tasks_run() -> impl std::future::Future<Output = ()> {
    let mut yielded = false;
    std::future::poll_fn(move |cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
}

/// Stops a helper task when the node stops, however it stops (returns, fails, or is aborted):
/// its sockets close with it, so the node can be started again on the same addresses.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The seed of node `id`'s random choices, from the base seed `base`: mixed, so nodes whose base
/// seeds are close (or the same) still draw unrelated election timeouts. (A plain `base ^ id`
/// gave all three nodes of a test with bases `31 * s + i` one seed whenever `31 * s` ended in
/// binary 00: their elections split in lockstep, term after term.)
fn node_seed(base: u64, id: NodeId) -> u64 {
    crate::net::mix64(base.wrapping_add(u64::from(id.0).wrapping_mul(0x9E37_79B9_7F4A_7C15)))
}

fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

// ------------------------------------------------------------------ HTTP API

/// The HTTP API's listener on `addr`.
#[cfg(not(madsim))]
async fn bind_http<N: Net>(addr: SocketAddr) -> Result<Option<N::Listener>, ServerError> {
    match N::bind(addr).await {
        Ok(l) => Ok(Some(l)),
        Err(source) => Err(ServerError::Bind { addr, source }),
    }
}

/// Under madsim there is no HTTP API (see [`run_with_api`]): requests come through
/// [`ApiHandle`]s only.
#[cfg(madsim)]
async fn bind_http<N: Net>(_addr: SocketAddr) -> Result<Option<N::Listener>, ServerError> {
    Ok(None)
}

async fn serve_http<N: Net>(listener: N::Listener, api: mpsc::Sender<ApiRequest>) {
    let app = Router::new()
        .route(
            "/v1/kv/{partition}/{key}",
            get(kv_get).put(kv_put).delete(kv_delete),
        )
        .route("/v1/kv/cas", axum::routing::post(kv_cas))
        .route("/v1/kv/batch", axum::routing::post(kv_batch))
        .route("/v1/cluster", get(cluster))
        .route("/v1/workloads", get(workload_list).post(workload_submit))
        .route(
            "/v1/workloads/{name}",
            get(workload_get).delete(workload_stop),
        )
        .route(
            "/v1/nodes/{node}/drain",
            axum::routing::post(node_drain).delete(node_undrain),
        )
        .route("/health/summary", get(health_summary))
        .route("/health/check", axum::routing::post(health_summary))
        .route("/recovery/metrics", get(recovery_metrics))
        .route("/metrics", get(prometheus))
        .route(
            "/v1/cluster/transfer-leader",
            axum::routing::post(transfer_leader),
        )
        .with_state(api);
    if let Err(e) = axum::serve(HttpListener::<N>(listener), app).await {
        tracing::error!(error = %e, "the HTTP server stopped");
    }
}

/// An error answer: a status and a JSON body.
struct ApiError(StatusCode, JsonValue);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

fn error(status: StatusCode, body: JsonValue) -> ApiError {
    ApiError(status, body)
}

fn key(partition: &str, name: String) -> Result<Key, ApiError> {
    partition
        .parse::<Partition>()
        .map(|p| Key::new(p, name))
        .map_err(|_| {
            error(
                StatusCode::BAD_REQUEST,
                json!({"error": "bad_partition", "partition": partition,
                       "expected": ["workers", "tasks", "task_history", "system_health", "configuration", "user"]}),
            )
        })
}

async fn call(api: &mpsc::Sender<ApiRequest>, op: ClientOp) -> Result<ClientResponse, ApiError> {
    let (tx, rx) = oneshot::channel();
    if api.send(ApiRequest::Op { op, reply: tx }).await.is_err() {
        return Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "shutting_down"}),
        ));
    }
    match rx.await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(client_error(e)),
        Err(_) => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "shutting_down"}),
        )),
    }
}

fn client_error(e: ClientError) -> ApiError {
    match e {
        ClientError::Overloaded { retry_after } => error(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "overloaded", "retry_after_ms": retry_after.as_millis() as u64}),
        ),
        ClientError::NotLeader { leader_hint } => error(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "no_leader", "leader_hint": leader_hint.map(|l| l.to_string())}),
        ),
        ClientError::CasMismatch { current } => error(
            StatusCode::CONFLICT,
            json!({"ok": false, "current": current.and_then(|c| serde_json::from_str::<JsonValue>(&c).ok())}),
        ),
        ClientError::NotCommitted => error(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "not_committed"}),
        ),
        ClientError::Indeterminate => error(
            StatusCode::GATEWAY_TIMEOUT,
            json!({"error": "outcome_unknown"}),
        ),
        ClientError::Refused { reason } => error(
            StatusCode::BAD_REQUEST,
            json!({"error": "refused", "reason": reason}),
        ),
    }
}

async fn kv_get(
    State(api): State<mpsc::Sender<ApiRequest>>,
    UrlPath((partition, name)): UrlPath<(String, String)>,
) -> Response {
    let key = match key(&partition, name) {
        Ok(k) => k,
        Err(r) => return r.into_response(),
    };
    match call(&api, ClientOp::Get { key }).await {
        Ok(ClientResponse::Value {
            value: Some(v),
            revision,
        }) => {
            let value = serde_json::from_str::<JsonValue>(&v).unwrap_or(JsonValue::String(v));
            (
                StatusCode::OK,
                Json(json!({"value": value, "revision": revision.0})),
            )
                .into_response()
        }
        Ok(_) => error(StatusCode::NOT_FOUND, json!({"error": "not_found"})).into_response(),
        Err(r) => r.into_response(),
    }
}

async fn kv_put(
    State(api): State<mpsc::Sender<ApiRequest>>,
    UrlPath((partition, name)): UrlPath<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let key = match key(&partition, name) {
        Ok(k) => k,
        Err(r) => return r.into_response(),
    };
    let value: JsonValue = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                json!({"error": "bad_json", "detail": e.to_string()}),
            )
            .into_response()
        }
    };
    let write = Write::Put {
        key,
        value: value.to_string(),
    };
    written(call(&api, ClientOp::Write(write)).await)
}

async fn kv_delete(
    State(api): State<mpsc::Sender<ApiRequest>>,
    UrlPath((partition, name)): UrlPath<(String, String)>,
) -> Response {
    let key = match key(&partition, name) {
        Ok(k) => k,
        Err(r) => return r.into_response(),
    };
    written(call(&api, ClientOp::Write(Write::Delete { key })).await)
}

fn written(r: Result<ClientResponse, ApiError>) -> Response {
    match r {
        Ok(ClientResponse::Written { revision }) => {
            (StatusCode::OK, Json(json!({"revision": revision.0}))).into_response()
        }
        Ok(other) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": "unexpected_answer", "detail": format!("{other:?}")}),
        )
        .into_response(),
        Err(r) => r.into_response(),
    }
}

/// A JSON request body, or a 400 naming what is wrong with it.
fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            json!({"error": "bad_request", "detail": e.to_string()}),
        )
    })
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CasBody {
    partition: String,
    key: String,
    /// The value expected now; `null` means the key must be absent.
    from: JsonValue,
    to: JsonValue,
}

async fn kv_cas(
    State(api): State<mpsc::Sender<ApiRequest>>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let b: CasBody = parse_body(&body)?;
    let key = key(&b.partition, b.key)?;
    let from = (!b.from.is_null()).then(|| b.from.to_string());
    let write = Write::Cas {
        key,
        from,
        to: b.to.to_string(),
    };
    match call(&api, ClientOp::Write(write)).await? {
        ClientResponse::Written { revision } => Ok((
            StatusCode::OK,
            Json(json!({"ok": true, "revision": revision.0})),
        )
            .into_response()),
        other => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": "unexpected_answer", "detail": format!("{other:?}")}),
        )),
    }
}

#[derive(serde::Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
enum BatchItem {
    Put {
        partition: String,
        key: String,
        value: JsonValue,
    },
    Delete {
        partition: String,
        key: String,
    },
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBody {
    ops: Vec<BatchItem>,
}

async fn kv_batch(
    State(api): State<mpsc::Sender<ApiRequest>>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let b: BatchBody = parse_body(&body)?;
    let mut ops = Vec::with_capacity(b.ops.len());
    for item in b.ops {
        ops.push(match item {
            BatchItem::Put {
                partition,
                key: k,
                value,
            } => keel_core::BatchOp::Put {
                key: key(&partition, k)?,
                value: value.to_string(),
            },
            BatchItem::Delete { partition, key: k } => keel_core::BatchOp::Delete {
                key: key(&partition, k)?,
            },
        });
    }
    Ok(written(
        call(&api, ClientOp::Write(Write::Batch { ops })).await,
    ))
}

async fn cluster_info(api: &mpsc::Sender<ApiRequest>) -> Result<ClusterInfo, ApiError> {
    let shutting_down = || {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "shutting_down"}),
        )
    };
    let (tx, rx) = oneshot::channel();
    api.send(ApiRequest::Cluster { reply: tx })
        .await
        .map_err(|_| shutting_down())?;
    rx.await.map_err(|_| shutting_down())
}

async fn cluster(State(api): State<mpsc::Sender<ApiRequest>>) -> Result<Response, ApiError> {
    let info = cluster_info(&api).await?;
    Ok((StatusCode::OK, Json(info)).into_response())
}

// ------------------------------------------------------------------ workloads

/// A workload as the API shows it, with its committed decisions (`explain`).
fn workload_json(w: &keel_core::Workload) -> JsonValue {
    json!({
        "name": w.spec.name,
        "command": w.spec.command,
        "args": w.spec.args,
        "resources": w.spec.resources,
        "max_attempts": w.spec.max_attempts,
        "desired": w.desired,
        "status": w.status.name(),
        "node": w.status.node().map(|n| n.to_string()),
        "epoch": w.epoch.0,
        "attempts": w.attempts,
        "explain": w.history.iter().map(|d| json!({"index": d.index.0, "what": d.what})).collect::<Vec<_>>(),
    })
}

/// `POST /v1/workloads` body; durations in milliseconds.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SubmitBody {
    name: String,
    command: String,
    #[serde(default)]
    args: Vec<String>,
    resources: Option<u32>,
    max_attempts: Option<u32>,
    backoff_base_ms: Option<u64>,
    backoff_cap_ms: Option<u64>,
    watchdog_ms: Option<u64>,
}

async fn workload_submit(
    State(api): State<mpsc::Sender<ApiRequest>>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let b: SubmitBody = parse_body(&body)?;
    let mut spec = keel_core::WorkloadSpec::new(b.name, b.command);
    spec.args = b.args;
    if let Some(r) = b.resources {
        spec.resources = r;
    }
    if let Some(m) = b.max_attempts {
        spec.max_attempts = m;
    }
    if let Some(ms) = b.backoff_base_ms {
        spec.backoff_base = Duration::from_millis(ms);
    }
    if let Some(ms) = b.backoff_cap_ms {
        spec.backoff_cap = Duration::from_millis(ms);
    }
    spec.watchdog = b.watchdog_ms.map(Duration::from_millis);
    if let Some(problem) = spec.problem() {
        return Err(error(
            StatusCode::BAD_REQUEST,
            json!({"error": "bad_request", "detail": problem}),
        ));
    }
    let op = ClientOp::Workload(keel_core::WorkloadOp::Submit(Box::new(spec)));
    Ok(written(call(&api, op).await))
}

async fn workload_stop(
    State(api): State<mpsc::Sender<ApiRequest>>,
    UrlPath(name): UrlPath<String>,
) -> Response {
    let op = ClientOp::Workload(keel_core::WorkloadOp::Stop { name });
    written(call(&api, op).await)
}

async fn workload_list(State(api): State<mpsc::Sender<ApiRequest>>) -> Result<Response, ApiError> {
    match call(&api, ClientOp::Workload(keel_core::WorkloadOp::List)).await? {
        ClientResponse::Workloads {
            workloads,
            revision,
        } => Ok((
            StatusCode::OK,
            Json(json!({
                "workloads": workloads.iter().map(workload_json).collect::<Vec<_>>(),
                "revision": revision.0,
            })),
        )
            .into_response()),
        other => Ok(written(Ok(other))),
    }
}

async fn workload_get(
    State(api): State<mpsc::Sender<ApiRequest>>,
    UrlPath(name): UrlPath<String>,
) -> Result<Response, ApiError> {
    let op = ClientOp::Workload(keel_core::WorkloadOp::Get { name });
    match call(&api, op).await? {
        ClientResponse::Workloads { workloads, .. } => match workloads.first() {
            Some(w) => Ok((StatusCode::OK, Json(workload_json(w))).into_response()),
            None => Err(error(StatusCode::NOT_FOUND, json!({"error": "not_found"}))),
        },
        other => Ok(written(Ok(other))),
    }
}

// ------------------------------------------------------------------ health and recovery

/// The registry (a linearizable read) and the cluster as this node sees it.
async fn registry(
    api: &mpsc::Sender<ApiRequest>,
) -> Result<(keel_core::Registry, u64, ClusterInfo), ApiError> {
    let info = cluster_info(api).await?;
    let op = ClientOp::Workload(keel_core::WorkloadOp::Registry);
    match call(api, op).await? {
        ClientResponse::Registry { registry, revision } => Ok((registry, revision.0, info)),
        other => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": "unexpected_answer", "detail": format!("{other:?}")}),
        )),
    }
}

/// The operator's word for a health verdict.
fn health_word(h: keel_core::Health) -> &'static str {
    match h {
        keel_core::Health::Alive => "online",
        keel_core::Health::Suspect => "degraded",
        keel_core::Health::Dead => "offline",
    }
}

/// `GET /health/summary` (and `POST /health/check`: the failure detector runs continuously, so a
/// check is a fresh linearizable read of its verdicts): node counts by health, workload counts,
/// and per-node details.
async fn health_summary(State(api): State<mpsc::Sender<ApiRequest>>) -> Result<Response, ApiError> {
    let (reg, revision, info) = registry(&api).await?;
    let mut counts = [0usize; 3];
    let mut details = Vec::new();
    for m in &info.members {
        let id: NodeId = m.parse().map_err(|_| {
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"error": "bad_member", "member": m}),
            )
        })?;
        let health = reg.health(id);
        counts[health as usize] += 1;
        let record = reg.nodes.get(&id);
        details.push(json!({
            "node_key": m,
            "status": health_word(health),
            "leader": info.leader.as_deref() == Some(m.as_str()),
            "draining": reg.draining(id),
            "workloads": reg.assigned_to(id).count(),
            "status_since_index": record.map_or(0, |r| r.since.0),
        }));
    }
    let failed = reg
        .workloads
        .values()
        .filter(|w| matches!(w.status, keel_core::Status::FailedPermanently { .. }))
        .count();
    let desired = reg
        .workloads
        .values()
        .filter(|w| w.desired == keel_core::Desired::Running)
        .count();
    let running = reg
        .workloads
        .values()
        .filter(|w| matches!(w.status, keel_core::Status::Running { .. }))
        .count();
    Ok((
        StatusCode::OK,
        Json(json!({
            "total_nodes": info.members.len(),
            "online_nodes": counts[keel_core::Health::Alive as usize],
            "degraded_nodes": counts[keel_core::Health::Suspect as usize],
            "offline_nodes": counts[keel_core::Health::Dead as usize],
            "failed_workloads": failed,
            "desired_workloads": desired,
            "running_workloads": running,
            "leader": info.leader,
            "revision": revision,
            "node_details": details,
        })),
    )
        .into_response())
}

/// `GET /recovery/metrics`: which workloads failed for good, which wait for placement or a
/// retry, and the detector's verdict per node.
async fn recovery_metrics(
    State(api): State<mpsc::Sender<ApiRequest>>,
) -> Result<Response, ApiError> {
    let (reg, revision, info) = registry(&api).await?;
    let named = |pred: fn(&keel_core::Status) -> bool| -> Vec<&str> {
        reg.workloads
            .iter()
            .filter(|(_, w)| pred(&w.status))
            .map(|(n, _)| n.as_str())
            .collect()
    };
    let mut checks = serde_json::Map::new();
    for m in &info.members {
        if let Ok(id) = m.parse::<NodeId>() {
            let record = reg.nodes.get(&id);
            checks.insert(
                m.clone(),
                json!({
                    "status": health_word(reg.health(id)),
                    "status_since_index": record.map_or(0, |r| r.since.0),
                }),
            );
        }
    }
    Ok((
        StatusCode::OK,
        Json(json!({
            "failed_workloads": named(|s| matches!(s, keel_core::Status::FailedPermanently { .. })),
            "pending_workloads": named(|s| matches!(s, keel_core::Status::Pending | keel_core::Status::Assigned { .. })),
            "backing_off_workloads": named(|s| matches!(s, keel_core::Status::BackingOff { .. })),
            "desired_state_count": reg.workloads.values().filter(|w| w.desired == keel_core::Desired::Running).count(),
            "attempts_total": reg.workloads.values().map(|w| u64::from(w.attempts)).sum::<u64>(),
            "health_checks": checks,
            "revision": revision,
        })),
    )
        .into_response())
}

async fn drain(api: &mpsc::Sender<ApiRequest>, node: &str, draining: bool) -> Response {
    let Ok(node) = node.parse::<NodeId>() else {
        return error(
            StatusCode::BAD_REQUEST,
            json!({"error": "bad_node", "node": node, "expected": "a node id like n2"}),
        )
        .into_response();
    };
    let op = ClientOp::Workload(keel_core::WorkloadOp::Drain { node, draining });
    written(call(api, op).await)
}

/// `POST /v1/nodes/{node}/drain`: no new placements on that node.
async fn node_drain(
    State(api): State<mpsc::Sender<ApiRequest>>,
    UrlPath(node): UrlPath<String>,
) -> Response {
    drain(&api, &node, true).await
}

/// `DELETE /v1/nodes/{node}/drain`: placements allowed again.
async fn node_undrain(
    State(api): State<mpsc::Sender<ApiRequest>>,
    UrlPath(node): UrlPath<String>,
) -> Response {
    drain(&api, &node, false).await
}

async fn prometheus(State(api): State<mpsc::Sender<ApiRequest>>) -> Response {
    let (tx, rx) = oneshot::channel();
    let text = match api.send(ApiRequest::Metrics { reply: tx }).await {
        Ok(()) => rx.await.ok(),
        Err(_) => None,
    };
    match text {
        Some(t) => (
            StatusCode::OK,
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            t,
        )
            .into_response(),
        None => error(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "shutting_down"}),
        )
        .into_response(),
    }
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TransferBody {
    #[serde(default)]
    to: Option<String>,
}

/// `POST /v1/cluster/transfer-leader` (body optional: `{"to": "n2"}`): the leader hands
/// leadership over (202); any other node answers 503 with the leader as hint.
async fn transfer_leader(
    State(api): State<mpsc::Sender<ApiRequest>>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let body: TransferBody = if body.is_empty() {
        TransferBody::default()
    } else {
        parse_body(&body)?
    };
    let to = match body.to {
        Some(t) => Some(t.parse::<NodeId>().map_err(|_| {
            error(
                StatusCode::BAD_REQUEST,
                json!({"error": "bad_node", "node": t, "expected": "a member id like n2"}),
            )
        })?),
        None => None,
    };
    let (tx, rx) = oneshot::channel();
    let unavailable = || {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "shutting_down"}),
        )
    };
    api.send(ApiRequest::Transfer { to, reply: tx })
        .await
        .map_err(|_| unavailable())?;
    match rx.await.map_err(|_| unavailable())? {
        Ok(()) => Ok((StatusCode::ACCEPTED, Json(json!({"transferring": true}))).into_response()),
        Err(hint) => Err(client_error(ClientError::NotLeader { leader_hint: hint })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_with_close_base_seeds_get_unrelated_seeds() {
        let mut seen = std::collections::BTreeSet::new();
        for s in 0..64u64 {
            for i in 0..5u32 {
                // The shape the turmoil test uses: base 31 * s + i for node i + 1.
                assert!(seen.insert(node_seed(31 * s + u64::from(i), NodeId(i + 1))));
            }
        }
        assert_ne!(node_seed(7, NodeId(1)), node_seed(7, NodeId(2)));
    }
}
