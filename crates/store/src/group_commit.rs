//! Group commit for the writes on the hot paths: audit events recorded on their own
//! (`Store::record_event`: refusals, authentication failures; `record_event_if_agent_is`:
//! issued tokens) and the lease
//! writes of a vend (`create_lease`, `activate_lease`, `fail_lease`) and of a revocation
//! (`settle_lease`). Each used to take its
//! own transaction, serialised on the write lock (and the chain head) and fsync'd alone; under
//! load they now wait together: one task takes every write queued while the previous
//! transaction was committing (at most [`MAX_BATCH`]), applies them in one transaction (the
//! chain appended in order), commits once, and only then answers each caller. Nothing is
//! acknowledged before its transaction is durable; when the transaction fails, every write of
//! it is refused (none was written). A lone write waits for nothing: the batch is whatever is
//! queued.
//!
//! Lock order: a batch applies its lease intents first, sorted by agent (each locks its
//! agent's row), then the rest in arrival order (lease rows, then the chain head), the order
//! every other transaction takes its locks in, so batches of several nodes on one PostgreSQL
//! never wait for each other in a cycle. Intents of one agent keep their arrival order, so
//! the quota counts them as it would one by one.
//!
//! The task holds a handle to the store without the queue, so it ends when the last handle
//! with the queue is dropped; a caller whose queue is gone (its runtime ended) writes in a
//! transaction of its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use creddy_core::audit::AuditEvent;
use tokio::sync::{mpsc, oneshot};

use crate::agents::AgentVersion;
use crate::leases::{Activation, Failure, Settlement};
use crate::{Intent, NewLease, Result, Store, StoreError};

/// The most writes committed in one transaction.
pub const MAX_BATCH: usize = 256;
/// Writes that may wait for the committing task before callers wait to queue.
const QUEUE: usize = 4 * MAX_BATCH;

/// A write that can share a transaction with others.
#[derive(Debug)]
pub(crate) enum Write {
    /// An audit event on its own.
    Event(AuditEvent),
    /// An audit event on behalf of an agent read earlier, written only if the agent is
    /// still exactly as read.
    EventIfAgent {
        /// The event.
        event: AuditEvent,
        /// The agent as it was read.
        version: AgentVersion,
    },
    /// A lease intent (`Store::create_lease`).
    Intent {
        /// The lease.
        lease: NewLease,
        /// The agent's quota of open leases.
        max_open: u32,
    },
    /// An issued credential's commit (`Store::activate_lease`).
    Activate(Activation),
    /// A failed mint (`Store::fail_lease`).
    Fail(Failure),
    /// A lease's end (`Store::settle_lease`: revoked, or failed when reconciled).
    Settle(Settlement),
}

impl Write {
    /// The event `self` appends to the chain, given what became of it (none when nothing
    /// happened).
    pub(crate) fn event_if(&self, outcome: &Done) -> Option<&AuditEvent> {
        match (self, outcome) {
            (Write::Event(event) | Write::EventIfAgent { event, .. }, Done::Event(_)) => {
                Some(event)
            }
            (Write::Activate(activation), Done::Activated(true)) => Some(&activation.event),
            (Write::Fail(failure), Done::Failed) => Some(&failure.event),
            (Write::Settle(settlement), Done::Settled(true)) => Some(&settlement.event),
            _ => None,
        }
    }
}

/// What became of a write.
#[derive(Debug)]
pub(crate) enum Done {
    /// The event's sequence number.
    Event(i64),
    /// The intent's outcome.
    Intent(Intent),
    /// The agent is no longer as it was read: nothing was written.
    Stale,
    /// Whether the lease was pending (and is now active).
    Activated(bool),
    /// The lease failed.
    Failed,
    /// Whether the lease had not ended yet (and now has).
    Settled(bool),
}

impl Done {
    /// The error for an answer of the wrong kind (a bug in this module, never a panic).
    pub(crate) fn unexpected(&self) -> StoreError {
        StoreError::Corrupt(format!("group commit answered {self:?} to another write"))
    }
}

/// A write waiting to be committed, with where its answer goes.
#[derive(Debug)]
struct Job {
    write: Write,
    answer: oneshot::Sender<Result<Done>>,
}

/// What the committing task has done so far (`/metrics` shows it; the benchmark reads from
/// it how many writes a transaction carried and how long each took).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Transactions committed.
    pub transactions: u64,
    /// Writes they carried.
    pub writes: u64,
    /// Time spent applying and committing them, in microseconds.
    pub busy_micros: u64,
}

/// The committing task's running totals.
#[derive(Debug, Default)]
struct Totals {
    transactions: AtomicU64,
    writes: AtomicU64,
    busy_micros: AtomicU64,
}

/// The queue of writes waiting for the committing task.
#[derive(Debug, Clone)]
pub(crate) struct Queue {
    sender: mpsc::Sender<Job>,
    totals: Arc<Totals>,
}

impl Queue {
    /// Starts the committing task over `store` (a handle without a queue).
    pub(crate) fn start(store: Store) -> Self {
        let (sender, receiver) = mpsc::channel(QUEUE);
        let totals: Arc<Totals> = Arc::default();
        let committing = commit_batches(store, receiver, Arc::clone(&totals));
        // A thread and runtime of its own: on the shared runtime the task waited behind the
        // request handlers for every statement's answer (busy 95 % of a run, a third of a
        // millisecond per statement on two saturated cores).
        let thread = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .and_then(|runtime| {
                std::thread::Builder::new()
                    .name("creddy-commit".into())
                    .spawn(move || runtime.block_on(committing))
            });
        if let Err(e) = thread {
            // The queue is closed then: each write takes a transaction of its own.
            tracing::error!(error = %e, "group commit could not start; writes commit one by one");
        }
        Self { sender, totals }
    }

    /// What the task has committed so far.
    pub(crate) fn stats(&self) -> CommitStats {
        let read = |n: &AtomicU64| n.load(Ordering::Relaxed);
        CommitStats {
            transactions: read(&self.totals.transactions),
            writes: read(&self.totals.writes),
            busy_micros: read(&self.totals.busy_micros),
        }
    }

    /// Queues `write` and waits until its batch is durable; the write back when the task is
    /// gone before taking it.
    async fn submit(&self, write: Write) -> std::result::Result<Result<Done>, Write> {
        let (answer, answered) = oneshot::channel();
        if let Err(refused) = self.sender.send(Job { write, answer }).await {
            return Err(refused.0.write);
        }
        Ok(answered.await.unwrap_or_else(|_| {
            Err(StoreError::Unavailable(sqlx::Error::Protocol(
                "the committing task ended before answering".into(),
            )))
        }))
    }
}

impl Store {
    /// Applies `write` and commits it: through group commit, or in a transaction of its own
    /// when this handle has no committing task (or it is gone).
    pub(crate) async fn write(&self, write: Write) -> Result<Done> {
        let write = match &self.events {
            Some(queue) => match queue.submit(write).await {
                Ok(answer) => return answer,
                Err(write) => write,
            },
            None => write,
        };
        self.apply_batch_now(&[&write])
            .await?
            .pop()
            .ok_or_else(|| StoreError::Corrupt("a write was applied with no outcome".into()))
    }
}

/// Takes what is queued, commits it in one transaction, answers, and again.
async fn commit_batches(store: Store, mut receiver: mpsc::Receiver<Job>, totals: Arc<Totals>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
        in_lock_order(&mut batch);
        let writes: Vec<&Write> = batch.iter().map(|job| &job.write).collect();
        let started = std::time::Instant::now();
        let applied = store.apply_batch_now(&writes).await;
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        totals.busy_micros.fetch_add(micros, Ordering::Relaxed);
        match applied {
            Ok(done) => {
                totals.transactions.fetch_add(1, Ordering::Relaxed);
                totals.writes.fetch_add(
                    u64::try_from(done.len()).unwrap_or(u64::MAX),
                    Ordering::Relaxed,
                );
                for (job, done) in batch.drain(..).zip(done) {
                    let _ = job.answer.send(Ok(done));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, writes = batch.len(), "a batch of writes was refused");
                for job in batch.drain(..) {
                    let _ = job.answer.send(Err(same_kind(&e)));
                }
            }
        }
    }
}

/// Intents first, by agent (arrival order kept within one agent), then the rest as they came.
fn in_lock_order(batch: &mut [Job]) {
    batch.sort_by(|a, b| match (&a.write, &b.write) {
        (Write::Intent { lease: x, .. }, Write::Intent { lease: y, .. }) => {
            x.agent_id.cmp(&y.agent_id)
        }
        (Write::Intent { .. }, _) => std::cmp::Ordering::Less,
        (_, Write::Intent { .. }) => std::cmp::Ordering::Greater,
        _ => std::cmp::Ordering::Equal,
    });
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

#[cfg(test)]
mod tests {
    use super::*;
    use creddy_core::Timestamp;
    use creddy_core::audit::{Action, Actor};
    use creddy_core::ids::LeaseId;

    fn job(write: Write) -> Job {
        Job {
            write,
            answer: oneshot::channel().0,
        }
    }

    fn intent(agent: &str, lease: &str) -> Write {
        Write::Intent {
            lease: NewLease {
                id: LeaseId::from_stored(lease.to_owned()),
                agent_id: agent.to_owned(),
                agent_name: agent.to_owned(),
                backend: "test".to_owned(),
                scopes: vec![],
                ttl_seconds: 60,
                created_at: Timestamp::from_millis(0),
                expires_at: Timestamp::from_millis(60_000),
            },
            max_open: 10,
        }
    }

    fn event(n: i64) -> (Write, String) {
        let event = AuditEvent::new(
            Action::TokenIssued,
            Actor::system(),
            Timestamp::from_millis(n),
        );
        let id = event.id.to_string();
        (Write::Event(event), id)
    }

    fn label(job: &Job) -> String {
        match &job.write {
            Write::Intent { lease, .. } => lease.id.to_string(),
            Write::Event(event) | Write::EventIfAgent { event, .. } => event.id.to_string(),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn intents_go_first_by_agent_and_the_rest_keep_their_order() {
        let ((first, first_id), (second, second_id)) = (event(1), event(2));
        let mut batch = vec![
            job(first),
            job(intent("ag_b", "cred_b1")),
            job(intent("ag_a", "cred_a1")),
            job(second),
            job(intent("ag_b", "cred_b2")),
            job(intent("ag_a", "cred_a2")),
        ];
        in_lock_order(&mut batch);
        let order: Vec<String> = batch.iter().map(label).collect();
        assert_eq!(
            order,
            [
                "cred_a1", "cred_a2", "cred_b1", "cred_b2", &first_id, &second_id
            ],
            "intents by agent in arrival order, then the other writes as they came"
        );
    }
}
