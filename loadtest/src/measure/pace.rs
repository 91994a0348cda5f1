//! The open-loop sender both write loads use: each task starts on its own schedule (`rate` per
//! second), whatever the answers to earlier ones, with at most `in_flight` running (beyond that
//! the sender falls behind its schedule, which shows in what is achieved).

use crate::clock::now;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Starts `task(0..count)` at `rate` per second and waits until every one has finished.
pub async fn open_loop<F, Fut>(rate: u32, count: usize, in_flight: usize, mut task: F)
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let gate = Arc::new(Semaphore::new(in_flight));
    let start = now();
    let every = Duration::from_secs_f64(1.0 / f64::from(rate));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..count {
        tokio::time::sleep_until(start + every * i as u32).await;
        let Ok(permit) = gate.clone().acquire_owned().await else { break };
        let job = task(i);
        tasks.spawn(async move {
            job.await;
            drop(permit);
        });
    }
    while tasks.join_next().await.is_some() {}
}
