//! Authentication work, off the game thread and bounded.
//!
//! Each [`SessionEvent::AuthRequested`](crate::protocol::SessionEvent::AuthRequested)
//! becomes one task on the IO runtime. The task waits for a provider slot
//! (at most [`AuthLimits::max_concurrent`] providers run at once), then calls
//! [`AuthProvider::authenticate`] and awaits its future: the provider's code
//! never runs on the game thread. The game thread only keeps the task's abort
//! handle and its deadline:
//!
//! * the connection closes → the task is aborted (its future dropped);
//! * [`AuthLimits::timeout`] passes on the server's clock → the task is
//!   aborted and the client refused with `AuthFailed`;
//! * [`AuthLimits::max_pending`] requests are already pending, or
//!   [`AuthLimits::max_pending_per_address`] from the client's address → the
//!   client is refused at once with `ServerFull`.
//!
//! Results come back through a channel and are applied at the next
//! `Receive` set.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use bevy_ecs::entity::Entity;
use crossbeam_channel::{Receiver, Sender};
use tokio::sync::Semaphore;
use tokio::task::AbortHandle;

use super::AuthLimits;
use super::counters::ServerCounters;
use crate::auth::{AuthError, AuthProvider, AuthRequest, Identity};
use crate::io::{ConnectionId, IoRuntime};

/// A provider's answer for one connection.
pub(super) struct AuthOutcome {
    pub(super) entity: Entity,
    pub(super) connection: ConnectionId,
    pub(super) result: Result<Identity, AuthError>,
}

/// Why a request was not started.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct TooManyPending;

struct Pending {
    entity: Entity,
    deadline: Instant,
    task: AbortHandle,
    /// The client's address key (see [`crate::io::limits::ip_key`]).
    address: Option<IpAddr>,
}

/// The authentication tasks in flight, by connection.
pub(super) struct Authentications {
    provider: Arc<dyn AuthProvider>,
    limits: AuthLimits,
    slots: Arc<Semaphore>,
    pending: BTreeMap<ConnectionId, Pending>,
    /// Pending requests per address key.
    per_address: HashMap<IpAddr, usize>,
    ipv6_prefix_len: u8,
    sender: Sender<AuthOutcome>,
    results: Receiver<AuthOutcome>,
    activity: Arc<Activity>,
}

impl Authentications {
    pub(super) fn new(
        provider: Arc<dyn AuthProvider>,
        limits: AuthLimits,
        ipv6_prefix_len: u8,
    ) -> Self {
        let (sender, results) = crossbeam_channel::unbounded();
        Authentications {
            provider,
            slots: Arc::new(Semaphore::new(limits.max_concurrent.max(1))),
            limits,
            pending: BTreeMap::new(),
            per_address: HashMap::new(),
            ipv6_prefix_len,
            sender,
            results,
            activity: Arc::new(Activity::default()),
        }
    }

    /// Requests in flight (running or waiting for a slot).
    pub(super) fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Starts authenticating `request` for `connection` on `runtime`.
    pub(super) fn start(
        &mut self,
        runtime: &IoRuntime,
        counters: &Arc<ServerCounters>,
        now: Instant,
        entity: Entity,
        connection: ConnectionId,
        request: AuthRequest,
    ) -> Result<(), TooManyPending> {
        let address = request
            .remote
            .map(|remote| crate::io::limits::ip_key(remote.ip(), self.ipv6_prefix_len));
        let from_address =
            address.map_or(0, |key| self.per_address.get(&key).copied().unwrap_or(0));
        if self.pending.len() >= self.limits.max_pending
            || from_address >= self.limits.max_pending_per_address
        {
            counters.auth_overflow();
            return Err(TooManyPending);
        }
        if let Some(key) = address {
            *self.per_address.entry(key).or_default() += 1;
        }
        let provider = Arc::clone(&self.provider);
        let slots = Arc::clone(&self.slots);
        let sender = self.sender.clone();
        let counters = Arc::clone(counters);
        let work = async move {
            let permit = match Arc::clone(&slots).try_acquire_owned() {
                Ok(permit) => Ok(permit),
                Err(_) => {
                    counters.auth_queued();
                    slots.acquire_owned().await
                }
            };
            let result = match permit {
                // The permit is held until the provider has answered.
                Ok(_permit) => provider.authenticate(request).await,
                Err(_) => Err(AuthError::Unavailable("server shutting down".into())),
            };
            // The receiver lives as long as the server; if it is gone the app
            // is shutting down and the result does not matter.
            let _ = sender.send(AuthOutcome {
                entity,
                connection,
                result,
            });
        };
        let task = runtime
            .handle()
            .spawn(Tracked::new(work, Arc::clone(&self.activity)));
        self.pending.insert(
            connection,
            Pending {
                entity,
                deadline: now + self.limits.timeout,
                task: task.abort_handle(),
                address,
            },
        );
        Ok(())
    }

    /// Aborts `connection`'s task (its connection closed). Returns whether
    /// one was pending.
    pub(super) fn cancel(&mut self, connection: ConnectionId) -> bool {
        match self.take(connection) {
            Some(pending) => {
                pending.task.abort();
                true
            }
            None => false,
        }
    }

    /// Answers that arrived, for connections still pending (in connection
    /// order, so a tick's outcomes apply deterministically).
    pub(super) fn finished(&mut self) -> Vec<AuthOutcome> {
        let mut outcomes: Vec<AuthOutcome> = self
            .results
            .try_iter()
            .filter(|outcome| {
                self.pending
                    .get(&outcome.connection)
                    .is_some_and(|pending| pending.entity == outcome.entity)
            })
            .collect();
        outcomes.sort_by_key(|outcome| outcome.connection);
        for outcome in &outcomes {
            self.take(outcome.connection);
        }
        outcomes
    }

    /// Aborts and returns the requests whose deadline has passed.
    pub(super) fn expired(&mut self, now: Instant) -> Vec<(ConnectionId, Entity)> {
        let expired: Vec<ConnectionId> = self
            .pending
            .iter()
            .filter(|(_, pending)| now >= pending.deadline)
            .map(|(connection, _)| *connection)
            .collect();
        expired
            .into_iter()
            .filter_map(|connection| {
                let pending = self.take(connection)?;
                pending.task.abort();
                Some((connection, pending.entity))
            })
            .collect()
    }

    /// Removes `connection`'s request, releasing its address's share.
    fn take(&mut self, connection: ConnectionId) -> Option<Pending> {
        let pending = self.pending.remove(&connection)?;
        if let Some(key) = pending.address
            && let Some(count) = self.per_address.get_mut(&key)
        {
            *count -= 1;
            if *count == 0 {
                self.per_address.remove(&key);
            }
        }
        Some(pending)
    }

    /// Blocks until no authentication task can make progress on its own
    /// (each has answered or waits on something outside it: a timer, a
    /// socket, a slot), at most `timeout`. Returns whether that happened.
    pub(super) fn settle(&self, timeout: Duration) -> bool {
        self.activity.wait_idle(timeout)
    }
}

impl Drop for Authentications {
    fn drop(&mut self) {
        for pending in self.pending.values() {
            pending.task.abort();
        }
    }
}

/// How many tracked tasks are runnable (spawned or woken, and not yet parked
/// or finished).
#[derive(Default)]
struct Activity {
    runnable: Mutex<usize>,
    idle: Condvar,
}

impl Activity {
    fn add(&self) {
        *self.runnable.lock().unwrap_or_else(|e| e.into_inner()) += 1;
    }

    fn remove(&self) {
        let mut runnable = self.runnable.lock().unwrap_or_else(|e| e.into_inner());
        *runnable = runnable.saturating_sub(1);
        if *runnable == 0 {
            self.idle.notify_all();
        }
    }

    fn wait_idle(&self, timeout: Duration) -> bool {
        let runnable = self.runnable.lock().unwrap_or_else(|e| e.into_inner());
        let (runnable, _) = self
            .idle
            .wait_timeout_while(runnable, timeout, |runnable| *runnable > 0)
            .unwrap_or_else(|e| e.into_inner());
        *runnable == 0
    }
}

/// Counted in [`Activity`]: scheduled or being polled.
const ACTIVE: u8 = 0;
/// Counted: woken while being polled (it will be polled again).
const NOTIFIED: u8 = 1;
/// Not counted: returned `Pending` and not woken since.
const PARKED: u8 = 2;
/// Not counted: finished.
const DONE: u8 = 3;

/// A future that keeps [`Activity`] informed of whether it is runnable.
struct Tracked<F> {
    future: Pin<Box<F>>,
    state: Arc<TaskState>,
}

struct TaskState {
    state: AtomicU8,
    activity: Arc<Activity>,
}

struct TrackedWaker {
    inner: Waker,
    state: Arc<TaskState>,
}

impl Wake for TrackedWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let state = &self.state.state;
        let mut current = state.load(Ordering::Acquire);
        loop {
            let next = match current {
                PARKED => ACTIVE,
                ACTIVE => NOTIFIED,
                _ => break,
            };
            match state.compare_exchange(current, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    if current == PARKED {
                        self.state.activity.add();
                    }
                    break;
                }
                Err(actual) => current = actual,
            }
        }
        self.inner.wake_by_ref();
    }
}

impl<F: Future<Output = ()>> Tracked<F> {
    fn new(future: F, activity: Arc<Activity>) -> Self {
        activity.add();
        Tracked {
            future: Box::pin(future),
            state: Arc::new(TaskState {
                state: AtomicU8::new(ACTIVE),
                activity,
            }),
        }
    }
}

impl<F: Future<Output = ()>> Future for Tracked<F> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let waker = Waker::from(Arc::new(TrackedWaker {
            inner: cx.waker().clone(),
            state: Arc::clone(&self.state),
        }));
        let ready = self.future.as_mut().poll(&mut Context::from_waker(&waker));
        let state = &self.state.state;
        match ready {
            Poll::Ready(()) => {
                // The result is already in the channel.
                if state.swap(DONE, Ordering::AcqRel) != PARKED {
                    self.state.activity.remove();
                }
                Poll::Ready(())
            }
            Poll::Pending => {
                // Woken during the poll: stay counted, the runtime polls again.
                if state
                    .compare_exchange(ACTIVE, PARKED, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    self.state.activity.remove();
                } else {
                    state.store(ACTIVE, Ordering::Release);
                }
                Poll::Pending
            }
        }
    }
}

impl<F> Drop for Tracked<F> {
    fn drop(&mut self) {
        // Aborted (or the runtime shut down) while counted.
        if matches!(
            self.state.state.swap(DONE, Ordering::AcqRel),
            ACTIVE | NOTIFIED
        ) {
            self.state.activity.remove();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::auth::AuthFuture;

    /// Never answers, so every request stays pending.
    struct Silent;

    impl AuthProvider for Silent {
        fn authenticate(&self, _request: AuthRequest) -> AuthFuture {
            Box::pin(std::future::pending())
        }
    }

    fn request(remote: &str) -> AuthRequest {
        AuthRequest {
            client_id: 1,
            remote: Some(remote.parse::<SocketAddr>().unwrap()),
            token: Vec::new(),
        }
    }

    #[test]
    fn pending_requests_are_capped_per_address_and_released() {
        let runtime = IoRuntime::new(1).unwrap();
        let counters = Arc::new(ServerCounters::default());
        let limits = AuthLimits {
            max_pending_per_address: 2,
            ..AuthLimits::default()
        };
        let mut auth = Authentications::new(Arc::new(Silent), limits, 64);
        let now = Instant::now();
        let entity = Entity::PLACEHOLDER;
        let start = |auth: &mut Authentications, id: u64, remote: &str| {
            auth.start(
                &runtime,
                &counters,
                now,
                entity,
                ConnectionId(id),
                request(remote),
            )
        };
        assert_eq!(start(&mut auth, 1, "192.0.2.1:1000"), Ok(()));
        assert_eq!(start(&mut auth, 2, "192.0.2.1:1001"), Ok(()));
        // A third from the same address is refused; other addresses are not.
        assert_eq!(start(&mut auth, 3, "192.0.2.1:1002"), Err(TooManyPending));
        assert_eq!(start(&mut auth, 4, "192.0.2.2:1000"), Ok(()));
        // IPv6 by its /64: two addresses of one prefix share a share.
        assert_eq!(start(&mut auth, 5, "[2001:db8::1]:1000"), Ok(()));
        assert_eq!(start(&mut auth, 6, "[2001:db8::2]:1000"), Ok(()));
        assert_eq!(
            start(&mut auth, 7, "[2001:db8::3]:1000"),
            Err(TooManyPending)
        );
        assert_eq!(counters.snapshot().auth_overflows, 2);
        // A closed connection releases its address's share.
        assert!(auth.cancel(ConnectionId(1)));
        assert_eq!(start(&mut auth, 8, "192.0.2.1:1003"), Ok(()));
        assert_eq!(auth.pending(), 5);
    }
}
