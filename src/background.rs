//! The refresh's CPU-heavy work (indexing an org, comparing it with the cached one, building a
//! generation) on a thread of its own at a lower scheduling priority, so that on a small
//! machine the checks being answered meanwhile get the CPU first: a refresh may take a little
//! longer, a person waiting in Slack should not.
//!
//! On Linux the thread is also put in the `SCHED_IDLE` class: a lower nice value only gives it
//! a smaller share, and a check woken while it runs could still wait for the rest of its time
//! slice (milliseconds); a thread of the idle class gives way at once. It still gets a small
//! share when the CPU is never idle, so a refresh slows down under load but does not stop.

/// How much lower than the process the work runs (a `nice` value: 0 to 19).
const NICENESS: i32 = 10;

/// Starts `work` at once on a new thread whose priority is lowered by [`NICENESS`]; the
/// future gives its result, or `None` if the thread could not be started or `work` panicked
/// (the panic is reported by the thread).
pub fn low_priority<T, F>(work: F) -> impl std::future::Future<Output = Option<T>>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("refresh-cpu".to_owned())
        .spawn(move || {
            lower_this_thread();
            let _ = tx.send(work());
        });
    if let Err(err) = &spawned {
        tracing::warn!(error = %err, "could not start a thread for the refresh");
    }
    async move { rx.await.ok() }
}

/// Runs `task` to its end on a thread of its own, at a lower priority, with a runtime of its
/// own: the refresher, whose reading, merging and dropping of whole orgs would otherwise hold
/// the async workers that answer checks for up to a second at a million users, and the loading
/// of the "did you mean" index (`store/redis_store/query.rs`). What it shares
/// with the rest (the store's connection, the HTTP clients) works from any runtime.
/// The future it returns is ready once `task` has ended (or could not be started).
pub fn spawn_low_priority_task<F>(
    name: &str,
    task: F,
) -> impl std::future::Future<Output = ()> + Send + 'static
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let (ended, on_end) = tokio::sync::oneshot::channel::<()>();
    let thread = name.to_owned();
    let spawned = std::thread::Builder::new()
        .name(thread.clone())
        .spawn(move || {
            lower_this_thread();
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime.block_on(task),
                Err(err) => {
                    tracing::error!(error = %err, thread = %thread, "could not start a runtime for a low-priority task")
                }
            }
            // The runtime, and the tasks it still held, are dropped before this is sent.
            drop(ended);
        });
    if let Err(err) = spawned {
        tracing::error!(error = %err, thread = name, "could not start a thread for a low-priority task");
    }
    async move {
        let _ = on_end.await;
    }
}

/// Batches waiting for [`drop_later`]'s thread at most; past it a batch is dropped where it is.
const DROPS_WAITING: usize = 1;

/// Drops `value` on a thread of its own at a lower priority: for a cache of a check's path
/// emptied at once (hundreds of small orgs, or replies), whose freeing took milliseconds in
/// the request that happened to empty it, and in its lock, which other checks wait for
/// (BENCHMARKS.md). The thread is in the idle class, like the refresh's work, so that a check
/// woken meanwhile gets the CPU at once. When it cannot be started, or is still behind with
/// [`DROPS_WAITING`] batch (a busy machine), `value` is dropped here as before: memory never
/// holds more than the batch being dropped and the one waiting.
///
/// Our own, over std's bounded channel: a dozen lines, no crate needed for it.
pub fn drop_later<T: Send + 'static>(value: T) {
    type Batch = Box<dyn Send>;
    static DROPPER: std::sync::OnceLock<Option<std::sync::mpsc::SyncSender<Batch>>> =
        std::sync::OnceLock::new();
    let sender = DROPPER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(DROPS_WAITING);
        std::thread::Builder::new()
            .name("cache-drop".to_owned())
            .spawn(move || {
                lower_this_thread();
                for batch in rx {
                    drop(batch);
                }
            })
            .ok()
            .map(|_| tx)
    });
    let batch: Batch = Box::new(value);
    if let Some(sender) = sender {
        // A full channel or a gone thread hands the batch back, to be dropped here.
        let _ = sender.try_send(batch);
    }
}

/// Lowers the calling thread's priority. Linux gives each thread its own nice value and
/// scheduling class; where that fails (or elsewhere) the work simply runs at the process's
/// priority.
fn lower_this_thread() {
    #[cfg(target_os = "linux")]
    {
        let tid = rustix::thread::gettid();
        let now = rustix::process::getpriority_process(Some(tid)).unwrap_or(0);
        let _ = rustix::process::setpriority_process(Some(tid), (now + NICENESS).min(19));
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `sched_setscheduler` only reads `param`, which lives across the call; pid 0
        // is the calling thread.
        let _ = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_runs_on_a_thread_of_its_own_at_a_lower_priority() {
        let (answer, mine, theirs, class) = low_priority(|| {
            let tid = rustix::thread::gettid();
            (
                6 * 7,
                std::thread::current().name().map(str::to_owned),
                rustix::process::getpriority_process(Some(tid)).ok(),
                // SAFETY: no arguments but the calling thread.
                unsafe { libc::sched_getscheduler(0) },
            )
        })
        .await
        .unwrap();
        assert_eq!(answer, 42);
        assert_eq!(mine.as_deref(), Some("refresh-cpu"));
        let here = rustix::process::getpriority_process(None).unwrap_or(0);
        assert_eq!(theirs, Some((here + NICENESS).min(19)));
        assert_eq!(class, libc::SCHED_IDLE);
        // The caller's own class is untouched.
        // SAFETY: as above.
        assert_ne!(unsafe { libc::sched_getscheduler(0) }, libc::SCHED_IDLE);
    }

    /// Tells, when dropped, on which thread that happened.
    struct Witness(std::sync::mpsc::Sender<Option<String>>);

    impl Drop for Witness {
        fn drop(&mut self) {
            let _ = self
                .0
                .send(std::thread::current().name().map(str::to_owned));
        }
    }

    #[test]
    fn a_value_given_to_drop_later_is_dropped_on_the_low_priority_thread() {
        let (tx, rx) = std::sync::mpsc::channel();
        drop_later(vec![Witness(tx.clone()), Witness(tx)]);
        for _ in 0..2 {
            let on = rx
                .recv_timeout(std::time::Duration::from_secs(10))
                .expect("dropped within 10 s");
            assert_eq!(on.as_deref(), Some("cache-drop"));
        }
    }
}
