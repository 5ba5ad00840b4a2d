//! The IO contract over the in-process memory transport. Fully deterministic:
//! every event is already queued when the call that caused it returns, so
//! these tests only ever use `try_recv` (no sleeps, no timeouts).

use mokosh_net::io::{
    ClientEndpoint, CloseCause, ConnectionId, ConnectionLink, IoConfig, IoEvent, LinkError,
    ServerEndpoint, memory,
};

fn next(events: &crossbeam_channel::Receiver<IoEvent>) -> IoEvent {
    events.try_recv().expect("an event should be queued")
}

fn assert_empty(events: &crossbeam_channel::Receiver<IoEvent>) {
    if let Ok(ev) = events.try_recv() {
        panic!("unexpected event {ev:?}");
    }
}

fn opened(events: &crossbeam_channel::Receiver<IoEvent>) -> ConnectionLink {
    match next(events) {
        IoEvent::Opened { id, remote, link } => {
            assert_eq!(remote, None);
            assert_eq!(link.id(), id);
            link
        }
        other => panic!("expected Opened, got {other:?}"),
    }
}

fn frame(events: &crossbeam_channel::Receiver<IoEvent>, want_id: ConnectionId) -> Vec<u8> {
    match next(events) {
        IoEvent::Frame { id, frame } => {
            assert_eq!(id, want_id);
            frame
        }
        other => panic!("expected Frame, got {other:?}"),
    }
}

fn closed(events: &crossbeam_channel::Receiver<IoEvent>, want_id: ConnectionId) -> CloseCause {
    match next(events) {
        IoEvent::Closed { id, cause } => {
            assert_eq!(id, want_id);
            cause
        }
        other => panic!("expected Closed, got {other:?}"),
    }
}

struct Setup {
    server: ServerEndpoint,
    client: ClientEndpoint,
    server_link: ConnectionLink,
    client_link: ConnectionLink,
    _listener: memory::MemoryListener,
}

fn setup(config: IoConfig) -> Setup {
    let (listener, server) = memory::listen(config);
    let client = listener.connect();
    let server_link = opened(server.events());
    let client_link = opened(client.events());
    Setup {
        server,
        client,
        server_link,
        client_link,
        _listener: listener,
    }
}

#[test]
fn open_frames_both_ways_in_order_and_counters() {
    let s = setup(IoConfig::default());
    let sid = s.server_link.id();
    let cid = s.client_link.id();
    assert_eq!(s.server.counters().snapshot().connections_accepted, 1);
    assert_eq!(s.server.counters().snapshot().connections_active, 1);
    assert_eq!(s.client.counters().snapshot().connections_active, 1);

    for i in 0..10u8 {
        s.client_link.send(vec![i; i as usize + 1]).unwrap();
        s.server_link.send(vec![100 + i]).unwrap();
    }
    for i in 0..10u8 {
        assert_eq!(frame(s.server.events(), sid), vec![i; i as usize + 1]);
        s.server_link.frame_consumed();
        assert_eq!(frame(s.client.events(), cid), vec![100 + i]);
        s.client_link.frame_consumed();
    }
    assert_empty(s.server.events());
    assert_empty(s.client.events());

    let sc = s.server.counters().snapshot();
    let cc = s.client.counters().snapshot();
    assert_eq!((sc.frames_in, sc.frames_out), (10, 10));
    assert_eq!((cc.frames_in, cc.frames_out), (10, 10));
    assert_eq!(sc.bytes_in, (1..=10).sum::<u64>());
    assert_eq!(cc.bytes_in, 10);
}

#[test]
fn close_from_client_flushes_then_closes_both_sides() {
    let s = setup(IoConfig::default());
    let (sid, cid) = (s.server_link.id(), s.client_link.id());
    s.client_link.send(b"last words".to_vec()).unwrap();
    s.client_link.close();
    s.client_link.close(); // idempotent
    assert_eq!(frame(s.server.events(), sid), b"last words");
    assert_eq!(closed(s.server.events(), sid), CloseCause::PeerClosed);
    assert_eq!(closed(s.client.events(), cid), CloseCause::Local);
    assert_empty(s.server.events());
    assert_empty(s.client.events());
    assert_eq!(s.client_link.send(vec![1]), Err(LinkError::Closed));
    assert_eq!(s.server_link.send(vec![1]), Err(LinkError::Closed));
    assert_eq!(s.server.counters().snapshot().connections_active, 0);
    assert_eq!(s.client.counters().snapshot().connections_active, 0);
}

#[test]
fn close_from_server_and_frames_queued_without_credit_are_flushed() {
    let config = IoConfig {
        inbound_frames_per_connection: 2,
        ..IoConfig::default()
    };
    let s = setup(config);
    let (sid, cid) = (s.server_link.id(), s.client_link.id());
    for i in 0..5u8 {
        s.server_link.send(vec![i]).unwrap();
    }
    s.server_link.close();
    // The closing side is done at once; sending now fails.
    assert_eq!(closed(s.server.events(), sid), CloseCause::Local);
    assert_eq!(s.server_link.send(vec![9]), Err(LinkError::Closed));
    assert_eq!(s.client_link.send(vec![9]), Err(LinkError::Closed));
    // The queued frames still arrive, paced by the client's credit, then Closed.
    for i in 0..5u8 {
        // At most 2 frames (the credit), plus the trailing Closed at the end.
        assert!(s.client.events().len() <= 3);
        assert_eq!(frame(s.client.events(), cid), vec![i]);
        s.client_link.frame_consumed();
    }
    assert_eq!(closed(s.client.events(), cid), CloseCause::PeerClosed);
    // Credit returned after Closed is harmless.
    s.client_link.frame_consumed();
    assert_empty(s.client.events());
}

#[test]
fn credit_limits_frames_in_the_channel() {
    let config = IoConfig {
        inbound_frames_per_connection: 3,
        outbound_queue: 100,
        ..IoConfig::default()
    };
    let s = setup(config);
    let sid = s.server_link.id();
    for i in 0..10u8 {
        s.client_link.send(vec![i]).unwrap();
    }
    // Only 3 delivered; the rest wait in the client's outbound queue.
    assert_eq!(s.server.events().len(), 3);
    let mut got = Vec::new();
    for _ in 0..3 {
        got.extend(frame(s.server.events(), sid));
    }
    assert_empty(s.server.events());
    // Each unit of credit returned lets exactly one more through, in order.
    s.server_link.frame_consumed();
    assert_eq!(s.server.events().len(), 1);
    got.extend(frame(s.server.events(), sid));
    assert_empty(s.server.events());
    // Over-returning credit is ignored: outstanding is 3 now.
    for _ in 0..50 {
        s.server_link.frame_consumed();
    }
    let mut more = 0;
    while let Ok(IoEvent::Frame { frame, .. }) = s.server.events().try_recv() {
        got.extend(frame);
        more += 1;
    }
    assert_eq!(more, 6);
    assert_eq!(got, (0..10).collect::<Vec<u8>>());
    assert_eq!(s.server.counters().snapshot().frames_in, 10);
    // 10 received, 10 effective consumes (the other 41 were ignored): the
    // full credit of 3 is back, and no more than that.
    for i in 0..5u8 {
        s.client_link.send(vec![i]).unwrap();
    }
    assert_eq!(s.server.events().len(), 3);
}

#[test]
fn the_outbound_queue_is_capped_in_bytes_and_reports_its_backlog() {
    let config = IoConfig {
        inbound_frames_per_connection: 1,
        outbound_queue_bytes: 1000,
        ..IoConfig::default()
    };
    let s = setup(config);
    // The first frame goes straight through on credit: no backlog.
    assert_eq!(s.server_link.send(vec![0; 10]), Ok(()));
    assert_eq!(s.server_link.backlog_bytes(), 0);
    assert_eq!(s.server_link.send(vec![1; 600]), Ok(()));
    assert_eq!(s.server_link.send(vec![2; 400]), Ok(()));
    assert_eq!(s.server_link.backlog_bytes(), 1000);
    // One byte more than the cap.
    assert_eq!(s.server_link.send(vec![3; 1]), Err(LinkError::Full));
    assert_eq!(s.server_link.backlog_bytes(), 1000);
    assert_eq!(s.server.counters().snapshot().slow_consumers, 1);
    // The peer reads one frame: the next one (600 bytes) leaves the backlog.
    assert!(matches!(
        s.client.events().try_recv(),
        Ok(IoEvent::Frame { .. })
    ));
    s.client_link.frame_consumed();
    assert_eq!(s.server_link.backlog_bytes(), 400);
    assert_eq!(s.server_link.send(vec![4; 600]), Ok(()));
    assert_eq!(s.server_link.backlog_bytes(), 1000);
}

#[test]
fn a_frame_into_an_empty_queue_is_accepted_whatever_its_size() {
    let config = IoConfig {
        inbound_frames_per_connection: 1,
        outbound_queue_bytes: 100,
        ..IoConfig::default()
    };
    let s = setup(config);
    assert_eq!(s.server_link.send(vec![0; 10]), Ok(()));
    assert_eq!(s.server_link.send(vec![1; 500]), Ok(()));
    assert_eq!(s.server_link.backlog_bytes(), 500);
    assert_eq!(s.server_link.send(vec![2; 1]), Err(LinkError::Full));
}

#[test]
fn full_when_outbound_cap_is_hit() {
    let config = IoConfig {
        inbound_frames_per_connection: 2,
        outbound_queue: 4,
        ..IoConfig::default()
    };
    let s = setup(config);
    let sid = s.server_link.id();
    let cid = s.client_link.id();
    // 2 go straight through on credit, 4 wait, the 7th is Full.
    for i in 0..6u8 {
        assert_eq!(s.server_link.send(vec![i]), Ok(()), "frame {i}");
    }
    assert_eq!(s.server_link.send(vec![6]), Err(LinkError::Full));
    assert_eq!(s.server_link.send(vec![7]), Err(LinkError::Full));
    // Counted once per connection, not per refused frame.
    assert_eq!(s.server.counters().snapshot().slow_consumers, 1);
    // The ECS disconnects the slow consumer.
    s.server_link.close();
    assert_eq!(closed(s.server.events(), sid), CloseCause::Local);
    let mut got = Vec::new();
    loop {
        match next(s.client.events()) {
            IoEvent::Frame { id, frame } => {
                assert_eq!(id, cid);
                got.extend(frame);
                s.client_link.frame_consumed();
            }
            IoEvent::Closed { id, cause } => {
                assert_eq!(id, cid);
                assert_eq!(cause, CloseCause::PeerClosed);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, vec![0, 1, 2, 3, 4, 5]);
    assert_empty(s.server.events());
}

#[test]
fn dropping_endpoints_closes_connections() {
    let (listener, server) = memory::listen(IoConfig::default());
    let c1 = listener.connect();
    let c2 = listener.connect();
    let l1 = opened(server.events());
    let l2 = opened(server.events());
    assert_ne!(l1.id(), l2.id());
    let _ = opened(c1.events());
    let _ = opened(c2.events());

    drop(c1);
    assert_eq!(closed(server.events(), l1.id()), CloseCause::PeerClosed);
    assert_eq!(l1.send(vec![1]), Err(LinkError::Closed));

    let c2_events = c2.events().clone();
    drop(server);
    assert_eq!(closed(&c2_events, ConnectionId(1)), CloseCause::PeerClosed);
    // The listener outlives its endpoint: connecting now fails cleanly.
    let c3 = listener.connect();
    assert!(matches!(
        closed(c3.events(), ConnectionId(1)),
        CloseCause::Io(_)
    ));
    assert_empty(c3.events());
}

#[test]
fn total_cap_refuses_and_counts_and_ids_are_never_reused() {
    let config = IoConfig {
        max_connections: 2,
        ..IoConfig::default()
    };
    let (listener, server) = memory::listen(config);
    let a = listener.connect();
    let b = listener.connect();
    let la = opened(server.events());
    let lb = opened(server.events());
    let c = listener.connect();
    assert!(matches!(
        closed(c.events(), ConnectionId(1)),
        CloseCause::HandshakeFailed(_)
    ));
    assert_eq!(
        server.counters().snapshot().connections_refused_total_cap,
        1
    );
    assert_empty(server.events());

    la.close();
    assert_eq!(closed(server.events(), la.id()), CloseCause::Local);
    let d = listener.connect();
    let ld = opened(server.events());
    assert!(ld.id() > lb.id());
    let _ = (a, b, d);
}

#[test]
fn exactly_one_closed_per_opened() {
    let (listener, server) = memory::listen(IoConfig::default());
    let mut clients = Vec::new();
    for _ in 0..20 {
        clients.push(listener.connect());
    }
    let mut links = Vec::new();
    while let Ok(ev) = server.events().try_recv() {
        if let IoEvent::Opened { link, .. } = ev {
            links.push(link);
        }
    }
    assert_eq!(links.len(), 20);
    // Close some from each side, twice, and drop the rest with the server.
    for (i, link) in links.iter().enumerate() {
        if i % 3 == 0 {
            link.close();
            link.close();
        }
    }
    for (i, client) in clients.iter().enumerate() {
        if i % 3 == 1 {
            let IoEvent::Opened { link, .. } = next(client.events()) else {
                panic!("expected Opened");
            };
            link.close();
        }
    }
    let events = server.events().clone();
    drop(server);
    let mut closed = std::collections::HashMap::new();
    while let Ok(ev) = events.try_recv() {
        if let IoEvent::Closed { id, .. } = ev {
            *closed.entry(id).or_insert(0) += 1;
        }
    }
    assert_eq!(closed.len(), 20);
    assert!(closed.values().all(|&n| n == 1));
    for client in &clients {
        let mut n = 0;
        while let Ok(ev) = client.events().try_recv() {
            if matches!(ev, IoEvent::Closed { .. }) {
                n += 1;
            }
        }
        assert_eq!(n, 1);
    }
}
