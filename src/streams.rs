//! Streamed answers that hold a database connection while the client reads them (the attendee
//! export): how many may run at once, and what happens when a client stops reading.
//!
//! A stream reads from the database only as fast as its client takes the bytes, so a client
//! that stops reading would otherwise keep a pooled connection in an open transaction for as
//! long as it likes, and a few dozen such clients would leave no connection for anyone else.
//! Three bounds, each on the resource it protects:
//! - per worker, at most a quarter of its pool's connections (at least one) feed streams; one
//!   more stream is refused at once with `503 exports_busy` rather than waiting;
//! - per caller (an account or a device key), at most [`PER_CALLER`] streams at a time on this
//!   instance, counted until the answer has ended, so that one caller cannot take every slot
//!   (`429 too_many_exports`);
//! - a stream whose client has not taken the next chunk within `REGISTRAR_SEND_TIMEOUT_MS`
//!   stops: its transaction is rolled back, its connection goes back to the pool, and its
//!   answer ends without the final chunk, so the client can tell it is incomplete. The socket
//!   itself is closed by the kernel after the same time without progress (`TCP_USER_TIMEOUT`,
//!   set in `startup`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::web::Bytes;
use futures_util::Stream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};

/// Streams one caller may have running at once on one instance.
pub const PER_CALLER: usize = 2;

/// Chunks waiting between the database side and the client.
const BUFFERED_CHUNKS: usize = 2;

#[derive(Clone)]
pub struct StreamSlots {
    /// This worker's share: a permit per stream feeding from its pool.
    connections: Arc<Semaphore>,
    /// Running streams per caller, across the instance's workers.
    callers: Arc<Mutex<HashMap<Uuid, usize>>>,
    send_timeout: Duration,
}

impl StreamSlots {
    /// Slots for streams fed from a pool of `pool_size` connections.
    pub fn new(pool_size: usize, send_timeout: Duration) -> Self {
        Self {
            connections: Arc::new(Semaphore::new((pool_size / 4).max(1))),
            callers: Arc::default(),
            send_timeout,
        }
    }

    /// The same slots per caller, for a worker whose pool has `pool_size` connections.
    pub fn for_pool(&self, pool_size: usize) -> Self {
        Self {
            connections: Arc::new(Semaphore::new((pool_size / 4).max(1))),
            ..self.clone()
        }
    }

    /// A slot for one more stream of `caller`, or the problem to answer at once.
    pub fn reserve(&self, caller: Uuid) -> ApiResult<Reservation> {
        let caller_slot = self.caller_slot(caller)?;
        let connection = Arc::clone(&self.connections)
            .try_acquire_owned()
            .map_err(|_| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "exports_busy",
                    "as many exports as this instance allows are running; retry shortly",
                )
                .with_header(header::RETRY_AFTER, HeaderValue::from_static("5"))
            })?;
        Ok(Reservation {
            connection,
            caller: caller_slot,
            send_timeout: self.send_timeout,
        })
    }

    fn caller_slot(&self, caller: Uuid) -> ApiResult<CallerSlot> {
        let mut callers = self
            .callers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let running = callers.entry(caller).or_insert(0);
        if *running >= PER_CALLER {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_exports",
                format!("{PER_CALLER} exports of yours are still running; let one finish first"),
            )
            .with_header(header::RETRY_AFTER, HeaderValue::from_static("10")));
        }
        *running += 1;
        Ok(CallerSlot {
            callers: Arc::clone(&self.callers),
            caller,
        })
    }
}

/// Counts one running stream of a caller until dropped.
struct CallerSlot {
    callers: Arc<Mutex<HashMap<Uuid, usize>>>,
    caller: Uuid,
}

impl Drop for CallerSlot {
    fn drop(&mut self) {
        let mut callers = self
            .callers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(running) = callers.get_mut(&self.caller) {
            *running -= 1;
            if *running == 0 {
                callers.remove(&self.caller);
            }
        }
    }
}

/// The slots of one stream, before it starts.
pub struct Reservation {
    connection: OwnedSemaphorePermit,
    caller: CallerSlot,
    send_timeout: Duration,
}

impl Reservation {
    /// The sending side (for the task that reads the database; it holds the connection slot)
    /// and the answer's body (it holds the caller's slot until the answer has ended).
    pub fn channel(
        self,
    ) -> (
        StreamSender,
        impl Stream<Item = Result<Bytes, std::io::Error>>,
    ) {
        let (sender, receiver) = mpsc::channel(BUFFERED_CHUNKS);
        let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let body = Body {
            receiver,
            finished: Arc::clone(&finished),
            _caller: self.caller,
        };
        let stream = futures_util::stream::unfold(body, |mut body| async move {
            match body.receiver.recv().await {
                Some(chunk) => Some((Ok(chunk), body)),
                // Ended without `finish`: the answer must not look complete.
                None if !body.finished.load(std::sync::atomic::Ordering::Acquire) => {
                    body.finished
                        .store(true, std::sync::atomic::Ordering::Release);
                    Some((
                        Err(std::io::Error::other("the stream stopped before its end")),
                        body,
                    ))
                }
                None => None,
            }
        });
        let sender = StreamSender {
            sender,
            finished,
            send_timeout: self.send_timeout,
            _connection: self.connection,
        };
        (sender, stream)
    }
}

struct Body {
    receiver: mpsc::Receiver<Bytes>,
    finished: Arc<std::sync::atomic::AtomicBool>,
    _caller: CallerSlot,
}

/// Why a chunk could not be handed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// The client went away.
    Gone,
    /// The client did not take the previous chunks within the send timeout.
    Stalled,
}

pub struct StreamSender {
    sender: mpsc::Sender<Bytes>,
    finished: Arc<std::sync::atomic::AtomicBool>,
    send_timeout: Duration,
    _connection: OwnedSemaphorePermit,
}

impl StreamSender {
    /// Hands a chunk over, waiting at most the send timeout for the client to make room.
    pub async fn send(&self, chunk: Bytes) -> Result<(), Stopped> {
        match tokio::time::timeout(self.send_timeout, self.sender.send(chunk)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Stopped::Gone),
            Err(_) => Err(Stopped::Stalled),
        }
    }

    /// Everything was sent: the answer ends normally once the client has read it.
    pub fn finish(self) {
        self.finished
            .store(true, std::sync::atomic::Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_gets_a_bounded_number_of_slots_and_gets_them_back() {
        let slots = StreamSlots::new(32, Duration::from_secs(1));
        let caller = Uuid::new_v4();
        let first = slots.reserve(caller).unwrap();
        let second = slots.reserve(caller).unwrap();

        let refused = slots.reserve(caller).err().unwrap();
        assert_eq!(refused.code(), "too_many_exports");
        assert!(slots.reserve(Uuid::new_v4()).is_ok());
        drop(first);
        assert!(slots.reserve(caller).is_ok());
        drop(second);
    }

    #[tokio::test]
    async fn a_sender_whose_client_stops_reading_gives_up_and_the_body_ends_incomplete() {
        use futures_util::StreamExt;
        let slots = StreamSlots::new(4, Duration::from_millis(50));
        let (sender, body) = slots.reserve(Uuid::new_v4()).unwrap().channel();
        let mut outcomes = Vec::new();
        for _ in 0..BUFFERED_CHUNKS + 1 {
            outcomes.push(sender.send(Bytes::from_static(b"row\n")).await);
        }
        drop(sender);

        assert_eq!(outcomes.last(), Some(&Err(Stopped::Stalled)));
        let read: Vec<_> = body.collect().await;
        assert_eq!(read.len(), BUFFERED_CHUNKS + 1);
        assert!(read[..BUFFERED_CHUNKS].iter().all(Result::is_ok));
        assert!(read[BUFFERED_CHUNKS].is_err(), "the answer looked complete");
    }

    #[tokio::test]
    async fn a_finished_stream_ends_normally() {
        use futures_util::StreamExt;
        let slots = StreamSlots::new(4, Duration::from_millis(50));
        let (sender, body) = slots.reserve(Uuid::new_v4()).unwrap().channel();
        sender.send(Bytes::from_static(b"row\n")).await.unwrap();
        sender.finish();

        let read: Vec<_> = body.collect().await;
        assert_eq!(read.len(), 1);
        assert!(read[0].is_ok());
    }

    #[test]
    fn a_worker_feeds_a_quarter_of_its_pool_at_most() {
        let slots = StreamSlots::new(1, Duration::from_secs(1)).for_pool(12);
        let held: Vec<_> = (0..3)
            .map(|_| slots.reserve(Uuid::new_v4()).unwrap())
            .collect();

        let refused = slots.reserve(Uuid::new_v4()).err().unwrap();
        assert_eq!(refused.code(), "exports_busy");
        drop(held);
        assert!(slots.reserve(Uuid::new_v4()).is_ok());
    }
}
