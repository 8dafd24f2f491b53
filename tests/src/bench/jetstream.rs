//! JetStream scenarios: publish with PubAck, pull-consume with acks, KV put/get. Unlike the
//! core scenarios these go through async-nats (what real applications use), on one
//! current-thread tokio runtime so the client takes as little of the shared CPUs as it can.
//!
//! Every scenario creates its stream or bucket with file storage, deleting a leftover one of
//! the same name first, so repeated runs against one server start from empty.

use async_nats::jetstream::{self, consumer, kv, stream};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

pub const STREAM: &str = "FJORD_BENCH";
const SUBJECT: &str = "bench.js";
pub const BUCKET: &str = "fjord_bench";
/// Distinct keys the KV scenarios cycle through (a realistic bucket, not one hot key).
const KV_KEYS: u64 = 1000;

#[derive(Debug, Clone, Copy)]
pub struct JsSample {
    /// Operations completed (publishes acknowledged, messages consumed and acked, KV ops).
    pub ops: u64,
    pub secs: f64,
    pub ops_per_sec: f64,
    /// Payload megabytes (10^6 bytes) per second.
    pub mb_per_sec: f64,
    /// Per-operation latency, present when operations ran one at a time.
    pub lat: Option<Percentiles>,
}

#[derive(Debug, Clone, Copy)]
pub struct Percentiles {
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
}

type Res<T> = Result<T, String>;

fn err<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> String {
    move |e| format!("{what}: {e}")
}

fn sample(ops: u64, size: usize, elapsed: Duration, lat: Option<Percentiles>) -> JsSample {
    let secs = elapsed.as_secs_f64().max(1e-9);
    JsSample {
        ops,
        secs,
        ops_per_sec: ops as f64 / secs,
        mb_per_sec: (ops as f64 * size as f64) / secs / 1e6,
        lat,
    }
}

fn percentiles(mut us: Vec<f64>) -> Option<Percentiles> {
    if us.is_empty() {
        return None;
    }
    us.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| us[((us.len() as f64 * q) as usize).min(us.len() - 1)];
    Some(Percentiles { p50_us: at(0.50), p90_us: at(0.90), p99_us: at(0.99), max_us: at(1.0) })
}

/// Runs `fut` on a fresh current-thread runtime, failing it after `timeout`.
pub fn block_on<T>(timeout: Duration, fut: impl std::future::Future<Output = Res<T>>) -> Res<T> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(err("tokio runtime"))?;
    rt.block_on(async {
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| format!("timed out after {}s", timeout.as_secs()))?
    })
}

async fn connect(url: &str) -> Res<jetstream::Context> {
    let client = async_nats::connect(url).await.map_err(err("connect"))?;
    Ok(jetstream::new(client))
}

/// A fresh file-storage stream on `SUBJECT`.
async fn fresh_stream(js: &jetstream::Context) -> Res<stream::Stream> {
    let _ = js.delete_stream(STREAM).await; // absent on a fresh server: fine
    js.create_stream(stream::Config {
        name: STREAM.into(),
        subjects: vec![SUBJECT.into()],
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(err("create stream"))
}

/// Publishes `n` messages of `size` bytes with at most `inflight` PubAcks outstanding
/// (1 = wait for each ack before the next publish). Checks every ack's sequence.
async fn publish_n(js: &jetstream::Context, n: u64, size: usize, inflight: usize) -> Res<Vec<f64>> {
    let payload = Bytes::from(vec![b'x'; size]);
    let mut pending: VecDeque<jetstream::context::PublishAckFuture> =
        VecDeque::with_capacity(inflight);
    let mut lat_us = Vec::new();
    let mut expect_seq = 1u64;
    let check = |ack: jetstream::publish::PublishAck, expect: &mut u64| -> Res<()> {
        if ack.sequence != *expect || ack.duplicate {
            return Err(format!(
                "PubAck seq {} (dup {}), expected {expect}",
                ack.sequence, ack.duplicate
            ));
        }
        *expect += 1;
        Ok(())
    };
    for _ in 0..n {
        if pending.len() >= inflight {
            let ack = pending.pop_front().expect("non-empty").await.map_err(err("PubAck"))?;
            check(ack, &mut expect_seq)?;
        }
        let t0 = Instant::now();
        let fut = js.publish(SUBJECT, payload.clone()).await.map_err(err("publish"))?;
        if inflight == 1 {
            let ack = fut.await.map_err(err("PubAck"))?;
            lat_us.push(t0.elapsed().as_secs_f64() * 1e6);
            check(ack, &mut expect_seq)?;
        } else {
            pending.push_back(fut);
        }
    }
    while let Some(fut) = pending.pop_front() {
        check(fut.await.map_err(err("PubAck"))?, &mut expect_seq)?;
    }
    Ok(lat_us)
}

/// `n` publishes to a file stream, each PubAck awaited (`inflight` of them outstanding).
pub fn publish(
    url: &str,
    n: u64,
    size: usize,
    inflight: usize,
    timeout: Duration,
) -> Res<JsSample> {
    block_on(timeout, async {
        let js = connect(url).await?;
        let mut st = fresh_stream(&js).await?;
        let t0 = Instant::now();
        let lat = publish_n(&js, n, size, inflight.max(1)).await?;
        let elapsed = t0.elapsed();
        let stored = st.info().await.map_err(err("stream info"))?.state.messages;
        if stored != n {
            return Err(format!("stream holds {stored} messages after {n} acknowledged publishes"));
        }
        Ok(sample(n, size, elapsed, percentiles(lat)))
    })
}

/// Fills a file stream with `n` messages (untimed), then times a durable pull consumer
/// (explicit acks) fetching them in batches of `batch` and acking each one.
pub fn consume(url: &str, n: u64, size: usize, batch: usize, timeout: Duration) -> Res<JsSample> {
    block_on(timeout, async {
        let js = connect(url).await?;
        let st = fresh_stream(&js).await?;
        publish_n(&js, n, size, 256).await?;
        let cons = st
            .create_consumer(consumer::pull::Config {
                durable_name: Some("bench".into()),
                ack_policy: consumer::AckPolicy::Explicit,
                max_ack_pending: -1,
                ..Default::default()
            })
            .await
            .map_err(err("create consumer"))?;
        let t0 = Instant::now();
        let mut got = 0u64;
        let mut last_seq = 0u64;
        while got < n {
            let want = batch.min((n - got) as usize);
            let mut msgs = cons
                .batch()
                .max_messages(want)
                .expires(Duration::from_secs(5))
                .messages()
                .await
                .map_err(err("pull request"))?;
            let before = got;
            while let Some(m) = msgs.next().await {
                let m = m.map_err(err("pulled message"))?;
                let seq = m.info().map_err(err("message metadata"))?.stream_sequence;
                if seq != last_seq + 1 {
                    return Err(format!("pulled stream seq {seq} after {last_seq}"));
                }
                last_seq = seq;
                m.ack().await.map_err(err("ack"))?;
                got += 1;
            }
            if got == before {
                return Err(format!("a pull request returned nothing after {got} of {n}"));
            }
        }
        let elapsed = t0.elapsed();
        Ok(sample(n, size, elapsed, None))
    })
}

async fn fresh_bucket(js: &jetstream::Context) -> Res<kv::Store> {
    let _ = js.delete_key_value(BUCKET).await;
    js.create_key_value(kv::Config {
        bucket: BUCKET.into(),
        history: 1,
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(err("create bucket"))
}

async fn put_n(store: &kv::Store, n: u64, size: usize, inflight: usize) -> Res<()> {
    let value = Bytes::from(vec![b'v'; size]);
    futures::stream::iter(0..n)
        .map(|i| {
            let value = value.clone();
            async move { store.put(format!("k{}", i % KV_KEYS), value).await }
        })
        .buffer_unordered(inflight.max(1))
        .try_for_each(|_| async { Ok(()) })
        .await
        .map_err(err("kv put"))
}

/// `n` KV puts over `KV_KEYS` keys with `inflight` of them outstanding.
pub fn kv_put(url: &str, n: u64, size: usize, inflight: usize, timeout: Duration) -> Res<JsSample> {
    block_on(timeout, async {
        let js = connect(url).await?;
        let store = fresh_bucket(&js).await?;
        let t0 = Instant::now();
        put_n(&store, n, size, inflight).await?;
        Ok(sample(n, size, t0.elapsed(), None))
    })
}

/// Fills `KV_KEYS` keys (untimed), then times `n` gets (direct gets: async-nats creates
/// buckets with allow_direct) with `inflight` outstanding; every one must find its value.
pub fn kv_get(url: &str, n: u64, size: usize, inflight: usize, timeout: Duration) -> Res<JsSample> {
    block_on(timeout, async {
        let js = connect(url).await?;
        let store = fresh_bucket(&js).await?;
        put_n(&store, KV_KEYS, size, 256).await?;
        let t0 = Instant::now();
        let store = &store;
        futures::stream::iter(0..n)
            .map(|i| async move {
                match store.get(format!("k{}", i % KV_KEYS)).await {
                    Ok(Some(v)) if v.len() == size => Ok(()),
                    Ok(Some(v)) => Err(format!("kv get: {} bytes, expected {size}", v.len())),
                    Ok(None) => Err(format!("kv get: key k{} missing", i % KV_KEYS)),
                    Err(e) => Err(format!("kv get: {e}")),
                }
            })
            .buffer_unordered(inflight.max(1))
            .try_for_each(|_| async { Ok(()) })
            .await?;
        Ok(sample(n, size, t0.elapsed(), None))
    })
}
