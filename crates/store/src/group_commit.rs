//! Group commit for audit events recorded on their own (`Store::record_event`: issued tokens,
//! refusals, authentication failures). Each such event used to take its own transaction,
//! serialised on the chain head and fsync'd alone; under load they now wait together: one task
//! takes every event queued while the previous transaction was committing (at most
//! [`MAX_BATCH`]), appends them to the chain in arrival order in one transaction, commits once,
//! and only then answers each caller with its sequence number. Nothing is acknowledged before
//! its transaction is durable; when the transaction fails, every event of it is refused (none
//! was written). A lone event waits for nothing: the batch is whatever is queued.
//!
//! The task holds a handle to the store without the queue, so it ends when the last handle
//! with the queue is dropped; a caller whose queue is gone (its runtime ended) writes its
//! event in a transaction of its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use creddy_core::audit::AuditEvent;
use tokio::sync::{mpsc, oneshot};

use crate::{Result, Store, StoreError};

/// The most events committed in one transaction.
pub const MAX_BATCH: usize = 256;
/// Events that may wait for the committing task before callers wait to queue.
const QUEUE: usize = 4 * MAX_BATCH;

/// An event waiting to be committed, with where its answer goes.
#[derive(Debug)]
struct Job {
    event: AuditEvent,
    answer: oneshot::Sender<Result<i64>>,
}

/// The queue of events waiting for the committing task.
#[derive(Debug, Clone)]
pub(crate) struct Queue {
    sender: mpsc::Sender<Job>,
    /// Transactions committed so far (what the batching saved shows against the events).
    batches: Arc<AtomicU64>,
}

impl Queue {
    /// Starts the committing task over `store` (a handle without a queue).
    pub(crate) fn start(store: Store) -> Self {
        let (sender, receiver) = mpsc::channel(QUEUE);
        let batches = Arc::default();
        tokio::spawn(commit_batches(store, receiver, Arc::clone(&batches)));
        Self { sender, batches }
    }

    /// Transactions the task has committed.
    pub(crate) fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }

    /// Queues `event` and waits until its batch is durable; `None` when the task is gone.
    pub(crate) async fn record(&self, event: &AuditEvent) -> Option<Result<i64>> {
        let (answer, answered) = oneshot::channel();
        let job = Job {
            event: event.clone(),
            answer,
        };
        self.sender.send(job).await.ok()?;
        answered.await.ok()
    }
}

/// Takes what is queued, commits it in one transaction, answers, and again.
async fn commit_batches(store: Store, mut receiver: mpsc::Receiver<Job>, batches: Arc<AtomicU64>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let events: Vec<&AuditEvent> = batch.iter().map(|job| &job.event).collect();
        match store.append_events_now(&events).await {
            Ok(seqs) => {
                batches.fetch_add(1, Ordering::Relaxed);
                for (job, seq) in batch.drain(..).zip(seqs) {
                    let _ = job.answer.send(Ok(seq));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, events = batch.len(), "a batch of audit events was refused");
                for job in batch.drain(..) {
                    let _ = job.answer.send(Err(same_kind(&e)));
                }
            }
        }
    }
}

/// The same failure for every member of a refused batch (the database error itself is not
/// `Clone`; its text is kept).
fn same_kind(e: &StoreError) -> StoreError {
    let text = || sqlx::Error::Protocol(e.to_string());
    match e {
        StoreError::NameTaken => StoreError::NameTaken,
        StoreError::Unavailable(_) => StoreError::Unavailable(text()),
        StoreError::AuditUnavailable(_) => StoreError::AuditUnavailable(text()),
        StoreError::Corrupt(m) => StoreError::Corrupt(m.clone()),
        StoreError::SchemaTooNew { found, supported } => StoreError::SchemaTooNew {
            found: *found,
            supported: *supported,
        },
        StoreError::InvalidLocation(m) => StoreError::InvalidLocation(m.clone()),
        StoreError::Conflict(m) => StoreError::Conflict(m.clone()),
    }
}
