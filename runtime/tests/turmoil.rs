//! The real server (accept loop, connection reader and writer tasks, outbound buffers) on
//! turmoil's simulated TCP, with a fixed seed: tier 2 of the simulation story, between the
//! sans-IO simulator (`sim/`) and the end-to-end tests against the binary.
//!
//! One server host, subscriber, queue-group and publisher hosts speaking raw NATS. While the
//! publishers publish, one subscriber's link is held for less than a ping interval (TCP only
//! delays it) and another's is partitioned for longer than the server's stale-connection bound,
//! then repaired. What nats-server's semantics imply, checked:
//!
//! - each subscriber connected throughout gets exactly the messages published to subjects its
//!   subscription matches, once each, in each publisher's order (the held one too);
//! - a queue group gets each matching message exactly once, spread over its members;
//! - nothing reaches a subscription whose subject does not match;
//! - the partitioned client's silence makes the server close it as a stale connection (PINGs
//!   unanswered); what it got before is a gap-free prefix of what it was owed, and it learns
//!   of the close when it speaks after the repair (a reset), rather than hanging;
//! - the same seed replays the same run, event for event.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use fjord::server::{Server, Shared};
use fjord_core::config::CoreConfig;
use fjord_sim::workload::proto::{self, ServerOp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use turmoil::net::{TcpListener, TcpStream};

const SEED: u64 = 0x5eed_f70d;
/// turmoil's default upper bound on a message's latency.
const MAX_LATENCY: Duration = Duration::from_millis(100);
const SERVER: &str = "server";
const PORT: u16 = 4222;

/// The server pings every second and closes a client with two PINGs unanswered.
const PING_INTERVAL: Duration = Duration::from_secs(1);
const PING_MAX: u32 = 2;

/// Each publisher sends this many messages, one every `GAP`: about eight simulated seconds.
const MESSAGES: usize = 200;
const GAP: Duration = Duration::from_millis(40);
const PUBLISHERS: [&str; 2] = ["pub-a", "pub-b"];
/// Message `i` of every publisher goes to `SUBJECTS[i % len]`; "audit" matches no one.
const SUBJECTS: [&str; 5] = ["orders.eu", "orders.us", "orders.us.west", "payments.card", "audit"];

/// A link held (messages delayed, as TCP retransmission would) for less than a ping interval.
const HELD: &str = "sub-held";
const HOLD: (Duration, Duration) = (Duration::from_millis(3000), Duration::from_millis(3600));
/// A link cut (messages dropped) for longer than the stale bound (ping interval x (max + 1)).
const FLAKY: &str = "sub-flaky";
const PARTITION: (Duration, Duration) = (Duration::from_secs(2), Duration::from_secs(7));

/// What the test does to a client's link, at a set simulated time.
#[derive(Debug)]
enum Fault {
    /// Drop everything both ways.
    Partition,
    Repair,
    /// Keep everything both ways, to deliver on release.
    Hold,
    Release,
}

/// Who subscribes to what; queue members share a name.
struct SubSpec {
    host: &'static str,
    subject: &'static str,
    queue: Option<&'static str>,
}

static SUBSCRIBERS: [SubSpec; 7] = [
    SubSpec { host: "sub-all", subject: "orders.>", queue: None },
    SubSpec { host: "sub-eu", subject: "orders.eu", queue: None },
    SubSpec { host: "sub-pay", subject: "payments.*", queue: None },
    SubSpec { host: HELD, subject: "orders.*", queue: None },
    SubSpec { host: FLAKY, subject: "orders.>", queue: None },
    SubSpec { host: "worker-1", subject: "orders.>", queue: Some("workers") },
    SubSpec { host: "worker-2", subject: "orders.>", queue: Some("workers") },
];

/// turmoil's listener as the server's network: the test's side of `fjord::net::Listener`.
struct SimListener(TcpListener);

impl fjord::net::Listener for SimListener {
    type Stream = TcpStream;

    async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        self.0.accept().await
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// One delivery as a subscriber saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Delivery {
    subject: String,
    publisher: String,
    seq: usize,
    /// Simulated time of arrival.
    at: Duration,
}

/// How a subscriber's run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// Its final PING was answered: it is still connected and has everything routed to it.
    Connected,
    /// The connection was closed or reset under it.
    Disconnected,
}

/// What the hosts share (turmoil runs every host on this one thread).
struct World {
    /// Subscribers whose SUB the server has acknowledged (PONG after it).
    subscribed: watch::Sender<usize>,
    /// Publishers whose every PUB the server has handled.
    published: watch::Sender<usize>,
    received: RefCell<BTreeMap<&'static str, (Vec<Delivery>, Outcome)>>,
    /// Every client event in order with its simulated time: two runs must match exactly.
    trace: RefCell<Vec<String>>,
    shared: RefCell<Option<Arc<Shared>>>,
}

impl World {
    /// From inside a host (the simulation's clock is current there).
    fn log(&self, host: &str, event: String) {
        self.log_at(turmoil::elapsed(), host, event);
    }

    fn log_at(&self, t: Duration, host: &str, event: String) {
        let t = t.as_micros();
        self.trace.borrow_mut().push(format!("{t:>10}us {host}: {event}"));
    }
}

/// A raw NATS client over a turmoil stream, parsing with the simulator's client-side reader.
struct Client {
    host: &'static str,
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    async fn connect(host: &'static str) -> io::Result<Client> {
        let stream = TcpStream::connect((SERVER, PORT)).await?;
        let mut client = Client { host, stream, buf: Vec::with_capacity(4096) };
        match client.next().await? {
            Some(ServerOp::Info) => {}
            other => return Err(unexpected(host, "INFO", &other)),
        }
        let mut out = Vec::new();
        proto::connect(&mut out, false, false, false, false);
        client.stream.write_all(&out).await?;
        Ok(client)
    }

    /// The next op from the server, answering its PINGs on the way; `None` at end of stream.
    /// Cancel-safe while waiting for bytes (they stay in `buf`).
    async fn next(&mut self) -> io::Result<Option<ServerOp>> {
        loop {
            let parsed = proto::parse(&self.buf).map_err(io::Error::other)?;
            if let Some((op, used)) = parsed {
                self.buf.drain(..used);
                if op == ServerOp::Ping {
                    self.stream.write_all(b"PONG\r\n").await?;
                    continue;
                }
                return Ok(Some(op));
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Ok(None);
            }
        }
    }

    /// PING, then read to its PONG: the server has handled everything this client sent
    /// before, and everything routed to it before the PONG has arrived (kept in `got`).
    async fn barrier(&mut self, got: &mut Vec<Delivery>, world: &World) -> io::Result<()> {
        self.stream.write_all(b"PING\r\n").await?;
        loop {
            match self.next().await? {
                Some(ServerOp::Pong) => return Ok(()),
                Some(ServerOp::Msg { subject, payload, .. }) => {
                    got.push(delivery(self.host, subject, payload, world)?)
                }
                other => return Err(unexpected(self.host, "PONG or MSG", &other)),
            }
        }
    }
}

fn unexpected(host: &str, wanted: &str, got: &Option<ServerOp>) -> io::Error {
    io::Error::other(format!("{host}: expected {wanted}, got {got:?}"))
}

/// Decodes a MSG (payload `publisher:seq`) and logs it.
fn delivery(host: &str, subject: Vec<u8>, payload: Vec<u8>, world: &World) -> io::Result<Delivery> {
    let subject = String::from_utf8(subject).map_err(io::Error::other)?;
    let payload = String::from_utf8(payload).map_err(io::Error::other)?;
    let (publisher, seq) = payload
        .split_once(':')
        .and_then(|(p, s)| Some((p.to_string(), s.parse().ok()?)))
        .ok_or_else(|| io::Error::other(format!("{host}: bad payload {payload:?}")))?;
    world.log(host, format!("MSG {subject} {payload}"));
    Ok(Delivery { subject, publisher, seq, at: turmoil::elapsed() })
}

async fn subscriber(spec: &'static SubSpec, world: Rc<World>) -> turmoil::Result {
    let mut client = Client::connect(spec.host).await?;
    let mut out = Vec::new();
    proto::sub(&mut out, spec.subject, spec.queue, 1);
    client.stream.write_all(&out).await?;
    let mut got = Vec::new();
    client.barrier(&mut got, &world).await?;
    world.log(spec.host, format!("subscribed to {}", spec.subject));
    world.subscribed.send_modify(|n| *n += 1);

    let mut published = world.published.subscribe();
    let mut outcome = Outcome::Connected;
    loop {
        tokio::select! {
            // Biased: no random branch order, so the run replays.
            biased;
            _ = published.wait_for(|&n| n == PUBLISHERS.len()) => break,
            op = client.next() => {
                let ended = match op {
                    Ok(Some(ServerOp::Msg { subject, payload, .. })) => {
                        got.push(delivery(spec.host, subject, payload, &world)?);
                        continue;
                    }
                    Ok(Some(ServerOp::Err(e))) => format!("-ERR {e}"),
                    Ok(None) => "end of stream".to_string(),
                    Err(e) => e.to_string(),
                    Ok(other) => return Err(unexpected(spec.host, "MSG", &other).into()),
                };
                world.log(spec.host, format!("connection ended: {ended}"));
                outcome = Outcome::Disconnected;
                break;
            }
        }
    }
    if outcome == Outcome::Connected {
        // Every publisher's PUBs were handled before this PING, so their deliveries to us
        // precede its PONG. A connection the server dropped answers with a reset instead;
        // one that neither answers nor resets within the bound is a hang, and fails.
        let answered =
            tokio::time::timeout(Duration::from_secs(5), client.barrier(&mut got, &world));
        outcome = match answered.await {
            Ok(Ok(())) => Outcome::Connected,
            Ok(Err(e)) => {
                world.log(spec.host, format!("final barrier failed: {e}"));
                Outcome::Disconnected
            }
            Err(_) => {
                return Err(format!("{}: final PING neither answered nor reset", spec.host).into())
            }
        };
    }
    world.log(spec.host, format!("done: {outcome:?}, {} messages", got.len()));
    world.received.borrow_mut().insert(spec.host, (got, outcome));
    Ok(())
}

async fn publisher(name: &'static str, world: Rc<World>) -> turmoil::Result {
    let mut client = Client::connect(name).await?;
    world.subscribed.subscribe().wait_for(|&n| n == SUBSCRIBERS.len()).await?;
    let mut next_at = tokio::time::Instant::now();
    let mut out = Vec::new();
    for seq in 0..MESSAGES {
        // Pace the publishing (it must span the faults), answering the server's PINGs.
        let pause = tokio::time::sleep_until(next_at);
        tokio::pin!(pause);
        loop {
            tokio::select! {
                biased;
                _ = &mut pause => break,
                op = client.next() => match op? {
                    Some(ServerOp::Pong) => {}
                    other => return Err(unexpected(name, "nothing", &other).into()),
                },
            }
        }
        out.clear();
        proto::publish(
            &mut out,
            SUBJECTS[seq % SUBJECTS.len()],
            None,
            None,
            format!("{name}:{seq}").as_bytes(),
        );
        client.stream.write_all(&out).await?;
        next_at += GAP;
    }
    client.barrier(&mut Vec::new(), &world).await?;
    world.log(name, "published all".into());
    world.published.send_modify(|n| *n += 1);
    Ok(())
}

/// Subject matching, written here independently of core's sublist: `*` is one token, `>` one
/// or more trailing tokens.
fn matches(pattern: &str, subject: &str) -> bool {
    let (mut p, mut s) = (pattern.split('.'), subject.split('.'));
    loop {
        match (p.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Each publisher's messages to subjects `pattern` matches, in its order.
fn owed(pattern: &str) -> BTreeMap<String, Vec<usize>> {
    PUBLISHERS
        .iter()
        .map(|p| {
            let seqs = (0..MESSAGES).filter(|i| matches(pattern, SUBJECTS[i % SUBJECTS.len()]));
            (p.to_string(), seqs.collect())
        })
        .collect()
}

/// Received deliveries per publisher, checking each one's subject is the one published.
fn by_publisher(host: &str, got: &[Delivery]) -> BTreeMap<String, Vec<usize>> {
    let mut per: BTreeMap<String, Vec<usize>> =
        PUBLISHERS.iter().map(|p| (p.to_string(), Vec::new())).collect();
    for d in got {
        assert_eq!(
            d.subject,
            SUBJECTS[d.seq % SUBJECTS.len()],
            "{host}: {d:?} has another subject than published"
        );
        per.get_mut(&d.publisher)
            .unwrap_or_else(|| panic!("{host}: unknown publisher in {d:?}"))
            .push(d.seq);
    }
    per
}

struct Run {
    received: BTreeMap<&'static str, (Vec<Delivery>, Outcome)>,
    trace: Vec<String>,
    stale_connections: u64,
}

fn run(seed: u64) -> Run {
    let world = Rc::new(World {
        subscribed: watch::channel(0).0,
        published: watch::channel(0).0,
        received: RefCell::default(),
        trace: RefCell::default(),
        shared: RefCell::default(),
    });
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .simulation_duration(Duration::from_secs(60))
        .max_message_latency(MAX_LATENCY)
        .build();

    let server_world = world.clone();
    sim.host(SERVER, move || {
        let world = server_world.clone();
        async move {
            let listener = TcpListener::bind((IpAddr::V4(Ipv4Addr::UNSPECIFIED), PORT)).await?;
            let config = CoreConfig {
                ping_interval: PING_INTERVAL,
                ping_max: PING_MAX,
                ..CoreConfig::default()
            };
            let server = Server::on(config, SimListener(listener), false, seed)?;
            *world.shared.borrow_mut() = Some(server.shared());
            server.run().await;
            Ok(())
        }
    });
    for spec in &SUBSCRIBERS {
        sim.client(spec.host, subscriber(spec, world.clone()));
    }
    for name in PUBLISHERS {
        sim.client(name, publisher(name, world.clone()));
    }

    // The link faults, in time order: (when, what, which client's link to the server).
    let faults = [
        (PARTITION.0, Fault::Partition, FLAKY),
        (HOLD.0, Fault::Hold, HELD),
        (HOLD.1, Fault::Release, HELD),
        (PARTITION.1, Fault::Repair, FLAKY),
    ];
    let mut due = faults.iter().peekable();
    loop {
        let now = sim.elapsed();
        while let Some((_, fault, host)) = due.next_if(|(at, ..)| now >= *at) {
            match fault {
                Fault::Partition => sim.partition(*host, SERVER),
                Fault::Hold => sim.hold(*host, SERVER),
                Fault::Release => sim.release(*host, SERVER),
                Fault::Repair => sim.repair(*host, SERVER),
            }
            world.log_at(now, "test", format!("{fault:?} {host} <-> {SERVER}"));
        }
        if sim.step().expect("the simulation runs") {
            break;
        }
    }
    assert!(due.next().is_none(), "the run ended before every fault was applied and repaired");
    let shared = world.shared.borrow().clone().expect("the server started");
    let stale_connections = shared.stale_connections.load(Ordering::Relaxed);
    let received = world.received.take();
    let trace = world.trace.take();
    // Shown if the test fails: the run's story without the individual messages.
    for line in trace.iter().filter(|l| !l.contains(": MSG ")) {
        eprintln!("{line}");
    }
    Run { received, trace, stale_connections }
}

#[test]
fn server_under_turmoil_keeps_pubsub_properties_through_partition_and_repair() {
    let first = run(SEED);
    let plain = SUBSCRIBERS.iter().filter(|s| s.queue.is_none() && s.host != FLAKY);
    for spec in plain {
        let (got, outcome) = &first.received[spec.host];
        assert_eq!(*outcome, Outcome::Connected, "{} was connected throughout", spec.host);
        assert_eq!(
            by_publisher(spec.host, got),
            owed(spec.subject),
            "{} ({}) must get exactly the matching messages, once each, in publisher order",
            spec.host,
            spec.subject
        );
    }
    assert!(first.received["sub-pay"].0.len() < first.received["sub-all"].0.len());
    // The hold did bite: nothing reached the held client while its link was held (past the
    // in-flight messages' latency), though publishing went on.
    let during_hold = |d: &&Delivery| d.at > HOLD.0 + MAX_LATENCY && d.at < HOLD.1;
    assert_eq!(first.received[HELD].0.iter().filter(during_hold).count(), 0);
    assert!(first.received["sub-all"].0.iter().filter(during_hold).count() > 0);

    // The queue group: every matching message exactly once over its members, each member in
    // publisher order, and the work actually shared.
    let mut group: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for spec in SUBSCRIBERS.iter().filter(|s| s.queue.is_some()) {
        let (got, outcome) = &first.received[spec.host];
        assert_eq!(*outcome, Outcome::Connected, "{} was connected throughout", spec.host);
        assert!(!got.is_empty(), "{} got none of the group's messages", spec.host);
        for (publisher, seqs) in by_publisher(spec.host, got) {
            assert!(
                seqs.windows(2).all(|w| w[0] < w[1]),
                "{}: out of order from {publisher}",
                spec.host
            );
            group.entry(publisher).or_default().extend(seqs);
        }
    }
    for seqs in group.values_mut() {
        seqs.sort_unstable();
    }
    assert_eq!(group, owed("orders.>"), "the queue group gets each message exactly once");

    // The partitioned client: silent past the stale bound, so the server closed it; it got a
    // gap-free prefix of what it was owed, and learned of the close after the repair.
    assert_eq!(first.stale_connections, 1, "the server closes the partitioned client as stale");
    let (got, outcome) = &first.received[FLAKY];
    assert_eq!(*outcome, Outcome::Disconnected);
    let owed_flaky = owed("orders.>");
    let mut total = 0;
    for (publisher, seqs) in by_publisher(FLAKY, got) {
        let all = &owed_flaky[&publisher];
        assert_eq!(seqs[..], all[..seqs.len()], "{FLAKY}: not a prefix of {publisher}'s messages");
        assert!(seqs.len() < all.len(), "{FLAKY} cannot have got {publisher}'s later messages");
        total += seqs.len();
    }
    assert!(total > 0, "{FLAKY} got messages before the partition");

    // Same seed, same run: every client event at the same simulated time.
    let second = run(SEED);
    assert_eq!(first.trace.len(), second.trace.len(), "the replay differs in length");
    for (a, b) in first.trace.iter().zip(&second.trace) {
        assert_eq!(a, b, "the replay differs");
    }
}
