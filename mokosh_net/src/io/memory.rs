//! An in-process transport with the same contract as [`websocket`](super::websocket),
//! for tests: deterministic and synchronous, no tokio, no threads.
//!
//! [`ConnectionLink::send`](super::ConnectionLink::send) on one side puts an
//! [`IoEvent::Frame`] directly on the peer's event channel while the peer has
//! inbound credit; otherwise the frame waits in the sender's outbound queue
//! (caps [`IoConfig::outbound_queue`] frames and
//! [`IoConfig::outbound_queue_bytes`] bytes, then [`LinkError::Full`]) until the
//! peer calls [`frame_consumed`](super::ConnectionLink::frame_consumed). This
//! mirrors TCP backpressure exactly, minus the socket buffers.
//!
//! [`close`](super::ConnectionLink::close) emits `Closed { cause: Local }` to
//! the closing side at once; the frames it had queued still reach the peer as
//! the peer returns credit (exactly like data ahead of a TCP FIN), followed by
//! `Closed { cause: PeerClosed }`. Dropping an endpoint closes its
//! connections (its own side gets `Shutdown`, the peer `PeerClosed`).
//!
//! Both sides of a memory connection use the listener's [`IoConfig`].
//! `max_connections` is enforced (a refused client sees a lone
//! `Closed { cause: HandshakeFailed(..) }`); `max_connections_per_ip`,
//! `handshake_timeout` and `allowed_origins` do not apply.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use crossbeam_channel::{Sender, TrySendError};

use super::{
    ChannelSizing, ClientEndpoint, CloseCause, ConnectionId, ConnectionLink, Counter,
    EndpointGuard, IoConfig, IoCounters, IoEvent, Link, LinkError, ServerEndpoint,
};

const SERVER: usize = 0;
const CLIENT: usize = 1;
/// The client side's connection id (as for `websocket::connect`).
const CLIENT_ID: ConnectionId = ConnectionId(1);

/// Creates an in-process listener and its server endpoint.
///
/// `MemoryListener::connect` creates client endpoints connected to it.
pub fn listen(config: IoConfig) -> (MemoryListener, ServerEndpoint) {
    let sizing = ChannelSizing::new(&config, config.max_connections);
    let (events_tx, events) = crossbeam_channel::bounded(sizing.capacity);
    let counters = Arc::new(IoCounters::default());
    let server = Arc::new(MemServer {
        config,
        events: events_tx,
        counters: Arc::clone(&counters),
        sizing,
        inner: Mutex::new(ServerInner {
            open: true,
            next_id: 1,
            connections: Vec::new(),
        }),
    });
    let endpoint = ServerEndpoint {
        events,
        local_addr: None,
        counters,
        _guard: EndpointGuard::Memory(MemGuard::Server(Arc::clone(&server))),
    };
    (MemoryListener { server }, endpoint)
}

/// The connecting side of a memory listener. Cheap to clone.
#[derive(Clone)]
pub struct MemoryListener {
    server: Arc<MemServer>,
}

impl fmt::Debug for MemoryListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryListener").finish_non_exhaustive()
    }
}

impl MemoryListener {
    /// Connects a new client. Synchronously, the server endpoint receives
    /// `Opened` and the returned client endpoint receives `Opened` (id
    /// `ConnectionId(1)`), or, when the server is gone or at
    /// `max_connections`, the client receives a lone `Closed`.
    pub fn connect(&self) -> ClientEndpoint {
        let server = &self.server;
        let sizing = ChannelSizing::new(&server.config, 1);
        let (client_tx, client_rx) = crossbeam_channel::bounded(sizing.capacity);
        let client_counters = Arc::new(IoCounters::default());
        let refuse = |cause: CloseCause| {
            let _ = client_tx.try_send(IoEvent::Closed {
                id: CLIENT_ID,
                cause,
            });
            ClientEndpoint {
                events: client_rx.clone(),
                counters: Arc::clone(&client_counters),
                _guard: EndpointGuard::Memory(MemGuard::Client(None)),
            }
        };

        let mut inner = lock(&server.inner);
        if !inner.open {
            return refuse(CloseCause::Io("memory listener closed".into()));
        }
        inner
            .connections
            .retain(|w| w.upgrade().is_some_and(|p| lock(&p.state).open));
        if inner.connections.len() >= server.config.max_connections {
            server.counters.bump(Counter::RefusedTotalCap);
            return refuse(CloseCause::HandshakeFailed(
                "refused: connection cap reached".into(),
            ));
        }
        let server_id = ConnectionId(inner.next_id);
        inner.next_id += 1;

        let credit = server.config.inbound_frames_per_connection.max(1);
        let dir = || Direction {
            pending: VecDeque::new(),
            pending_bytes: 0,
            refused: false,
            credit,
            outstanding: 0,
        };
        let pair = Arc::new(Pair {
            state: Mutex::new(PairState {
                open: true,
                draining: None,
                dirs: [dir(), dir()],
            }),
            ids: [server_id, CLIENT_ID],
            events: [server.events.clone(), client_tx.clone()],
            counters: [Arc::clone(&server.counters), Arc::clone(&client_counters)],
            budgets: [server.sizing.frame_budget, sizing.frame_budget],
            outbound_cap: server.config.outbound_queue.max(1),
            outbound_cap_bytes: server.config.outbound_queue_bytes.max(1),
        });
        inner.connections.push(Arc::downgrade(&pair));

        server.counters.bump(Counter::Accepted);
        for side in [SERVER, CLIENT] {
            pair.counters[side].opened();
            let link = ConnectionLink::new(
                pair.ids[side],
                Arc::new(MemLink {
                    pair: Arc::clone(&pair),
                    side,
                }),
            );
            let _ = pair.events[side].try_send(IoEvent::Opened {
                id: pair.ids[side],
                remote: None,
                link,
            });
        }
        drop(inner);

        ClientEndpoint {
            events: client_rx,
            counters: client_counters,
            _guard: EndpointGuard::Memory(MemGuard::Client(Some(pair))),
        }
    }
}

pub(crate) struct MemServer {
    config: IoConfig,
    events: Sender<IoEvent>,
    counters: Arc<IoCounters>,
    sizing: ChannelSizing,
    inner: Mutex<ServerInner>,
}

struct ServerInner {
    open: bool,
    next_id: u64,
    connections: Vec<Weak<Pair>>,
}

/// One memory connection. Lock order: `MemServer::inner`, then `Pair::state`.
pub(crate) struct Pair {
    state: Mutex<PairState>,
    ids: [ConnectionId; 2],
    events: [Sender<IoEvent>; 2],
    counters: [Arc<IoCounters>; 2],
    budgets: [usize; 2],
    outbound_cap: usize,
    outbound_cap_bytes: usize,
}

struct PairState {
    /// Both sides may send. False once either side closed.
    open: bool,
    /// A close waiting for queued frames to reach the peer.
    draining: Option<Drain>,
    /// `dirs[s]`: frames travelling from side `s` to the other side.
    dirs: [Direction; 2],
}

struct Drain {
    /// The side that closed; its queued frames are still being delivered.
    from: usize,
    /// What the other side gets once they are.
    peer_cause: CloseCause,
}

struct Direction {
    /// Sent but waiting for the receiver's credit (the "outbound queue").
    pending: VecDeque<Vec<u8>>,
    /// Total length of `pending`.
    pending_bytes: usize,
    /// Whether `send` already answered Full once (counted once per connection).
    refused: bool,
    /// Frames the receiver may still be handed.
    credit: usize,
    /// Frames handed to the receiver and not yet `frame_consumed`.
    outstanding: usize,
}

impl Direction {
    fn clear_pending(&mut self) {
        self.pending.clear();
        self.pending_bytes = 0;
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What delivering one frame did.
enum Delivery {
    Delivered,
    /// The receiver's event channel is over its frame budget.
    Overloaded,
}

impl Pair {
    /// Hands one frame from `from` to the other side's event channel.
    fn deliver(&self, from: usize, frame: Vec<u8>) -> Delivery {
        let to = 1 - from;
        if self.events[to].len() >= self.budgets[to] {
            self.counters[to].bump(Counter::Overloaded);
            return Delivery::Overloaded;
        }
        let len = frame.len();
        match self.events[to].try_send(IoEvent::Frame {
            id: self.ids[to],
            frame,
        }) {
            Ok(()) => {
                self.counters[from].frame_out(len);
                self.counters[to].frame_in(len);
                Delivery::Delivered
            }
            Err(TrySendError::Full(_)) => {
                self.counters[to].bump(Counter::Overloaded);
                Delivery::Overloaded
            }
            // Nobody listens on that side any more; the frame is moot.
            Err(TrySendError::Disconnected(_)) => Delivery::Delivered,
        }
    }

    /// Moves waiting frames from `from` to the receiver while it has credit;
    /// completes a draining close once the queue is empty.
    fn pump(&self, state: &mut PairState, from: usize) {
        let to = 1 - from;
        while state.dirs[from].credit > 0 {
            let Some(frame) = state.dirs[from].pending.pop_front() else {
                break;
            };
            state.dirs[from].pending_bytes -= frame.len();
            state.dirs[from].credit -= 1;
            state.dirs[from].outstanding += 1;
            if let Delivery::Overloaded = self.deliver(from, frame) {
                if state.open {
                    self.shut(
                        state,
                        to,
                        CloseCause::Overloaded,
                        CloseCause::PeerClosed,
                        false,
                    );
                } else {
                    // Draining towards an overloaded receiver: give up on the rest.
                    self.finish_drain(state, Some(CloseCause::Overloaded));
                }
                return;
            }
        }
        if state.draining.as_ref().is_some_and(|d| d.from == from)
            && state.dirs[from].pending.is_empty()
        {
            self.finish_drain(state, None);
        }
    }

    /// Closes the connection, initiated by `side`. `side` gets `own` at once.
    /// With `flush`, the frames `side` had queued still reach the peer as its
    /// credit allows, and the peer gets `peer` after the last of them
    /// (a draining close, like a TCP FIN behind queued data).
    fn shut(
        &self,
        state: &mut PairState,
        side: usize,
        own: CloseCause,
        peer: CloseCause,
        flush: bool,
    ) {
        if !state.open {
            return;
        }
        state.open = false;
        let other = 1 - side;
        // The closing side will read nothing more.
        state.dirs[other].clear_pending();
        self.emit_closed(side, own);
        if !flush {
            state.dirs[side].clear_pending();
        }
        state.draining = Some(Drain {
            from: side,
            peer_cause: peer,
        });
        self.pump(state, side);
    }

    /// Ends a draining close: drops what is still queued and tells the peer.
    fn finish_drain(&self, state: &mut PairState, cause_override: Option<CloseCause>) {
        if let Some(drain) = state.draining.take() {
            state.dirs[drain.from].clear_pending();
            let to = 1 - drain.from;
            self.emit_closed(to, cause_override.unwrap_or(drain.peer_cause));
        }
    }

    fn emit_closed(&self, side: usize, cause: CloseCause) {
        self.counters[side].closed();
        let _ = self.events[side].try_send(IoEvent::Closed {
            id: self.ids[side],
            cause,
        });
    }
}

/// The memory side of a [`ConnectionLink`].
#[derive(Clone)]
pub(crate) struct MemLink {
    pair: Arc<Pair>,
    side: usize,
}

impl Link for MemLink {
    fn send(&self, frame: Vec<u8>) -> Result<(), LinkError> {
        let pair = &self.pair;
        let mut state = lock(&pair.state);
        if !state.open {
            return Err(LinkError::Closed);
        }
        let dir = &mut state.dirs[self.side];
        let over_bytes = dir.pending_bytes > 0
            && dir.pending_bytes.saturating_add(frame.len()) > pair.outbound_cap_bytes;
        if dir.pending.len() >= pair.outbound_cap || over_bytes {
            if !dir.refused {
                dir.refused = true;
                pair.counters[self.side].bump(Counter::SlowConsumer);
            }
            return Err(LinkError::Full);
        }
        dir.pending_bytes += frame.len();
        dir.pending.push_back(frame);
        pair.pump(&mut state, self.side);
        if state.open {
            Ok(())
        } else {
            Err(LinkError::Closed)
        }
    }

    fn close(&self) {
        let mut state = lock(&self.pair.state);
        self.pair.shut(
            &mut state,
            self.side,
            CloseCause::Local,
            CloseCause::PeerClosed,
            true,
        );
    }

    fn frame_consumed(&self) {
        let pair = &self.pair;
        let mut state = lock(&pair.state);
        let from = 1 - self.side;
        let dir = &mut state.dirs[from];
        if dir.outstanding == 0 {
            return;
        }
        dir.outstanding -= 1;
        dir.credit += 1;
        if state.open || state.draining.as_ref().is_some_and(|d| d.from == from) {
            pair.pump(&mut state, from);
        }
    }

    fn backlog_bytes(&self) -> usize {
        lock(&self.pair.state).dirs[self.side].pending_bytes
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}

/// Closes a memory endpoint's connections when the endpoint is dropped.
pub(crate) enum MemGuard {
    Server(Arc<MemServer>),
    Client(Option<Arc<Pair>>),
}

impl Drop for MemGuard {
    fn drop(&mut self) {
        let (pairs, side) = match self {
            MemGuard::Server(server) => {
                let mut inner = lock(&server.inner);
                inner.open = false;
                let pairs: Vec<Arc<Pair>> = inner
                    .connections
                    .drain(..)
                    .filter_map(|w| w.upgrade())
                    .collect();
                (pairs, SERVER)
            }
            MemGuard::Client(pair) => (pair.take().into_iter().collect(), CLIENT),
        };
        for pair in pairs {
            let mut state = lock(&pair.state);
            pair.shut(
                &mut state,
                side,
                CloseCause::Shutdown,
                CloseCause::PeerClosed,
                false,
            );
            // An earlier draining close ends now too.
            pair.finish_drain(&mut state, None);
        }
    }
}
