//! One WebSocket connection driven by one tokio task (reader and writer as two
//! futures in a `select!`), generic over the byte stream (TCP, later TLS).
//!
//! Nothing here is shared between connections except the endpoint's event
//! channel (non-blocking `try_send`) and its counters (atomics), so a stuck
//! socket can only stall its own task.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crossbeam_channel::TrySendError;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::ProtocolError as WsProtocolError;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tracing::debug;

use super::limits::Unauthenticated;
use super::{
    ChannelSizing, CloseCause, ConnectionId, ConnectionLink, Counter, IoConfig, IoCounters,
    IoEvent, Link, LinkError,
};

/// How long a closing connection may take to flush its queue and send the
/// close frame, and how long we then wait for the peer's close reply.
pub(crate) const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// The same, when the whole endpoint is being dropped.
const SHUTDOWN_CLOSE_TIMEOUT: Duration = Duration::from_millis(250);
/// Retry period for `Opened`/`Closed` when the event channel is full.
const CONTROL_RETRY: Duration = Duration::from_millis(5);
/// During shutdown, give up delivering a control event after this many retries.
const CONTROL_RETRIES_AT_SHUTDOWN: u32 = 100;

/// What every connection of one endpoint shares.
pub(crate) struct EndpointShared {
    pub(crate) events: crossbeam_channel::Sender<IoEvent>,
    pub(crate) counters: Arc<IoCounters>,
    pub(crate) sizing: ChannelSizing,
    pub(crate) config: IoConfig,
}

impl EndpointShared {
    /// The shared state of a new endpoint sized for `connections`, and the
    /// receiving end of its event channel.
    pub(crate) fn new(
        config: IoConfig,
        connections: usize,
    ) -> (Arc<Self>, crossbeam_channel::Receiver<IoEvent>) {
        let sizing = ChannelSizing::new(&config, connections);
        let (events, receiver) = crossbeam_channel::bounded(sizing.capacity);
        let shared = Arc::new(EndpointShared {
            events,
            counters: Arc::new(IoCounters::default()),
            sizing,
            config,
        });
        (shared, receiver)
    }
}

/// The IO-task side of a [`ConnectionLink`].
pub(crate) struct TaskLink {
    outbound: mpsc::Sender<Vec<u8>>,
    credit: Semaphore,
    /// Frames delivered to the ECS and not yet returned by `frame_consumed`.
    outstanding: AtomicUsize,
    close_requested: watch::Sender<bool>,
    closing: AtomicBool,
    counters: Arc<IoCounters>,
    /// Bytes in `outbound` (sent by the ECS, not yet taken by the writer).
    backlog: AtomicUsize,
    /// Hard cap on `backlog`.
    max_backlog: usize,
    /// Whether `send` already answered Full once (counted once per connection).
    refused: AtomicBool,
    /// Its place under `IoConfig::max_unauthenticated` until authenticated.
    unauthenticated: std::sync::Mutex<Option<Unauthenticated>>,
}

impl TaskLink {
    fn refused(&self) {
        if !self.refused.swap(true, Ordering::AcqRel) {
            self.counters.bump(Counter::SlowConsumer);
        }
    }
}

impl Link for TaskLink {
    fn send(&self, frame: Vec<u8>) -> Result<(), LinkError> {
        if self.closing.load(Ordering::Acquire) {
            return Err(LinkError::Closed);
        }
        let len = frame.len();
        // Only the game thread adds; the writer only subtracts, so a check
        // followed by an add never overshoots the cap.
        let queued = self.backlog.load(Ordering::Acquire);
        if queued > 0 && queued.saturating_add(len) > self.max_backlog {
            self.refused();
            return Err(LinkError::Full);
        }
        self.backlog.fetch_add(len, Ordering::AcqRel);
        match self.outbound.try_send(frame) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.backlog.fetch_sub(len, Ordering::AcqRel);
                match e {
                    mpsc::error::TrySendError::Full(_) => {
                        self.refused();
                        Err(LinkError::Full)
                    }
                    mpsc::error::TrySendError::Closed(_) => Err(LinkError::Closed),
                }
            }
        }
    }

    fn close(&self) {
        self.closing.store(true, Ordering::Release);
        self.close_requested.send_replace(true);
    }

    fn frame_consumed(&self) {
        let took = self
            .outstanding
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        if took.is_ok() {
            self.credit.add_permits(1);
        }
    }

    fn backlog_bytes(&self) -> usize {
        self.backlog.load(Ordering::Acquire)
    }

    fn mark_authenticated(&self) {
        let place = self
            .unauthenticated
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        drop(place);
    }

    fn kind(&self) -> &'static str {
        "websocket"
    }
}

/// The WebSocket settings derived from an [`IoConfig`].
pub(crate) fn ws_config(
    config: &IoConfig,
) -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        // The read buffer is allocated eagerly per connection; 128 KiB default
        // is too much for thousands of small game connections.
        .read_buffer_size(16 * 1024)
        // Batches small frames into fewer syscalls; `flush` always writes all.
        .write_buffer_size(16 * 1024)
        .max_message_size(Some(config.max_frame_len))
        .max_frame_size(Some(config.max_frame_len))
}

/// Delivers `Opened`/`Closed`, which must never be dropped: the channel keeps
/// headroom for them, and if it is nevertheless full we wait (this task only).
async fn deliver_control(
    shared: &EndpointShared,
    mut event: IoEvent,
    shutdown: &watch::Receiver<()>,
) {
    let mut retries_at_shutdown = 0;
    loop {
        match shared.events.try_send(event) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => return,
            Err(TrySendError::Full(back)) => {
                event = back;
                if shutdown.has_changed().is_err() {
                    retries_at_shutdown += 1;
                    if retries_at_shutdown > CONTROL_RETRIES_AT_SHUTDOWN {
                        return;
                    }
                }
                tokio::time::sleep(CONTROL_RETRY).await;
            }
        }
    }
}

/// Emits the `Closed` of a client connection that never opened.
pub(crate) async fn deliver_failed(
    shared: &EndpointShared,
    id: ConnectionId,
    cause: CloseCause,
    shutdown: &watch::Receiver<()>,
) {
    deliver_control(shared, IoEvent::Closed { id, cause }, shutdown).await;
}

/// How the connection's main phase ended.
struct End {
    cause: CloseCause,
    /// Whether a close frame should still be attempted.
    send_close: bool,
}

/// Runs an upgraded connection to completion: `Opened`, frames, exactly one `Closed`.
pub(crate) async fn run_connection<S>(
    ws: WebSocketStream<S>,
    id: ConnectionId,
    remote: Option<SocketAddr>,
    unauthenticated: Option<Unauthenticated>,
    shared: Arc<EndpointShared>,
    mut shutdown: watch::Receiver<()>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let config = &shared.config;
    let (outbound, mut outbound_rx) = mpsc::channel(config.outbound_queue.max(1));
    let (close_requested, close_rx) = watch::channel(false);
    let link = Arc::new(TaskLink {
        outbound,
        credit: Semaphore::new(config.inbound_frames_per_connection.max(1)),
        outstanding: AtomicUsize::new(0),
        close_requested,
        closing: AtomicBool::new(false),
        counters: Arc::clone(&shared.counters),
        backlog: AtomicUsize::new(0),
        max_backlog: config.outbound_queue_bytes.max(1),
        refused: AtomicBool::new(false),
        unauthenticated: std::sync::Mutex::new(unauthenticated),
    });
    let handle = ConnectionLink::new(id, Arc::clone(&link) as Arc<dyn Link>);

    shared.counters.opened();
    deliver_control(
        &shared,
        IoEvent::Opened {
            id,
            remote,
            link: handle,
        },
        &shutdown,
    )
    .await;

    let (mut sink, mut stream) = ws.split();
    let end = {
        let reader = read_loop(&mut stream, id, &link, &shared);
        let writer = write_loop(
            &mut sink,
            &mut outbound_rx,
            close_rx.clone(),
            &shared.counters,
            &link.backlog,
        );
        let mut stuck_rx = close_rx.clone();
        let stuck = async move {
            // After close() the writer gets CLOSE_TIMEOUT to flush; a socket
            // the peer does not read must not keep the connection alive.
            if stuck_rx.wait_for(|c| *c).await.is_err() {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(CLOSE_TIMEOUT).await;
        };
        tokio::select! {
            cause = reader => End { cause, send_close: true },
            end = writer => end,
            () = stuck => End { cause: CloseCause::Local, send_close: false },
            _ = shutdown.changed() => End { cause: CloseCause::Shutdown, send_close: true },
        }
    };

    // From here on, `send` answers Closed.
    link.closing.store(true, Ordering::Release);
    outbound_rx.close();
    link.credit.close();

    debug!(%id, cause = ?end.cause, "connection ending");
    let limit = if end.cause == CloseCause::Shutdown {
        SHUTDOWN_CLOSE_TIMEOUT
    } else {
        CLOSE_TIMEOUT
    };
    let mut linger = false;
    if end.cause == CloseCause::PeerClosed {
        // tungstenite queued the close reply; flush it.
        let _ = tokio::time::timeout(limit, sink.close()).await;
    } else if end.send_close {
        let frame = close_frame(&end.cause);
        let sent = tokio::time::timeout(limit, sink.send(Message::Close(Some(frame)))).await;
        linger = matches!(sent, Ok(Ok(())));
    }

    shared.counters.closed();
    deliver_control(
        &shared,
        IoEvent::Closed {
            id,
            cause: end.cause,
        },
        &shutdown,
    )
    .await;

    if linger {
        // Read until the peer's close reply / EOF so that closing the socket
        // with unread data does not reset the connection (which can make the
        // peer lose our close frame).
        let drain = async { while let Some(Ok(_)) = stream.next().await {} };
        let _ = tokio::time::timeout(limit, drain).await;
    }
}

fn close_frame(cause: &CloseCause) -> CloseFrame {
    let (code, reason) = match cause {
        CloseCause::Local => (CloseCode::Normal, ""),
        CloseCause::Shutdown => (CloseCode::Away, "shutdown"),
        CloseCause::Oversized => (CloseCode::Size, "message too large"),
        CloseCause::ProtocolError(_) => (CloseCode::Unsupported, "protocol error"),
        CloseCause::Overloaded => (CloseCode::Again, "overloaded"),
        _ => (CloseCode::Error, ""),
    };
    CloseFrame {
        code,
        reason: reason.into(),
    }
}

/// Maps a read error to a close cause, counting the ones that are counted.
fn classify(error: WsError, counters: &IoCounters) -> CloseCause {
    match error {
        WsError::ConnectionClosed | WsError::AlreadyClosed => CloseCause::PeerClosed,
        WsError::Capacity(_) => {
            counters.bump(Counter::Oversized);
            CloseCause::Oversized
        }
        WsError::Protocol(WsProtocolError::ResetWithoutClosingHandshake) => {
            CloseCause::Io("connection reset without closing handshake".into())
        }
        WsError::Protocol(p) => {
            counters.bump(Counter::ProtocolError);
            CloseCause::ProtocolError(p.to_string())
        }
        WsError::Utf8(e) => {
            counters.bump(Counter::ProtocolError);
            CloseCause::ProtocolError(format!("invalid UTF-8: {e}"))
        }
        other => CloseCause::Io(other.to_string()),
    }
}

async fn read_loop<St>(
    stream: &mut St,
    id: ConnectionId,
    link: &TaskLink,
    shared: &EndpointShared,
) -> CloseCause
where
    St: Stream<Item = Result<Message, WsError>> + Unpin,
{
    loop {
        let message = match stream.next().await {
            None => return CloseCause::PeerClosed,
            Some(Err(e)) => return classify(e, &shared.counters),
            Some(Ok(m)) => m,
        };
        match message {
            Message::Binary(bytes) => {
                // Waiting here stalls only this connection; TCP pushes back on the peer.
                match link.credit.acquire().await {
                    Ok(permit) => permit.forget(),
                    Err(_) => return CloseCause::Local,
                }
                link.outstanding.fetch_add(1, Ordering::AcqRel);
                if shared.events.len() >= shared.sizing.frame_budget {
                    shared.counters.bump(Counter::Overloaded);
                    return CloseCause::Overloaded;
                }
                let frame = Vec::from(bytes);
                // Counted before sending, so the count is already visible
                // to whoever reacts to the event.
                shared.counters.frame_in(frame.len());
                match shared.events.try_send(IoEvent::Frame { id, frame }) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => {
                        shared.counters.bump(Counter::Overloaded);
                        return CloseCause::Overloaded;
                    }
                    Err(TrySendError::Disconnected(_)) => return CloseCause::Shutdown,
                }
            }
            Message::Text(_) => {
                shared.counters.bump(Counter::ProtocolError);
                return CloseCause::ProtocolError("text message".into());
            }
            Message::Close(_) => return CloseCause::PeerClosed,
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
        }
    }
}

async fn write_loop<K>(
    sink: &mut K,
    outbound: &mut mpsc::Receiver<Vec<u8>>,
    mut close_rx: watch::Receiver<bool>,
    counters: &IoCounters,
    backlog: &AtomicUsize,
) -> End
where
    K: Sink<Message, Error = WsError> + Unpin,
{
    let batch_max = outbound.max_capacity();
    loop {
        let (first, closing) = tokio::select! {
            biased;
            r = async { close_rx.wait_for(|c| *c).await.map(|_| ()) } => {
                let _ = r;
                (None, true)
            }
            frame = outbound.recv() => match frame {
                Some(f) => (Some(f), false),
                None => (None, true),
            },
        };
        let mut batch = 0;
        let mut next = first;
        loop {
            let frame = match next.take() {
                Some(f) => f,
                None if batch < batch_max || closing => match outbound.try_recv() {
                    Ok(f) => f,
                    Err(_) => break,
                },
                None => break,
            };
            batch += 1;
            backlog.fetch_sub(frame.len(), Ordering::AcqRel);
            counters.frame_out(frame.len());
            if let Err(e) = sink.feed(Message::binary(frame)).await {
                return End {
                    cause: CloseCause::Io(e.to_string()),
                    send_close: false,
                };
            }
        }
        if let Err(e) = sink.flush().await {
            return End {
                cause: CloseCause::Io(e.to_string()),
                send_close: false,
            };
        }
        if closing {
            return End {
                cause: CloseCause::Local,
                send_close: true,
            };
        }
    }
}
