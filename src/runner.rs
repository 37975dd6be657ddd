//! An instance's background work (delivering notifications, housekeeping): one runner whose
//! tasks stop when the server does, each finishing the round it is in.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

pub struct Runner {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Default for Runner {
    fn default() -> Self {
        Self::new()
    }
}

impl Runner {
    pub fn new() -> Self {
        Runner {
            stop: watch::Sender::new(false),
            tasks: JoinSet::new(),
        }
    }

    /// Becomes `true` when the runner stops.
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Runs a task that watches `stopping()` itself.
    pub fn spawn(&mut self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(task);
    }

    /// Runs `round` again and again until the runner stops: at once when it reports more to
    /// do, otherwise when `wake` sees a new value or after `every`. A failed round is logged
    /// and tried again `every` later.
    pub fn repeat<F, Fut>(
        &mut self,
        name: &'static str,
        every: Duration,
        mut wake: Option<watch::Receiver<u64>>,
        mut round: F,
    ) where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = anyhow::Result<bool>> + Send,
    {
        let mut stop = self.stop.subscribe();
        self.tasks.spawn(async move {
            loop {
                if *stop.borrow() {
                    return;
                }
                let more = match round().await {
                    Ok(more) => more,
                    Err(error) => {
                        tracing::warn!(
                            task = name,
                            error = format!("{error:#}"),
                            "background work failed; will try again"
                        );
                        false
                    }
                };
                if more {
                    continue;
                }
                let woken = async {
                    let open = match wake.as_mut() {
                        Some(wake) => wake.changed().await.is_ok(),
                        None => false,
                    };
                    if !open {
                        std::future::pending::<()>().await;
                    }
                };
                tokio::select! {
                    _ = stop.changed() => return,
                    () = woken => {}
                    () = tokio::time::sleep(every) => {}
                }
            }
        });
    }

    /// Stops every task and waits up to `grace` for them to finish their round.
    pub async fn shutdown(mut self, grace: Duration) {
        self.stop.send_replace(true);
        let all = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::warn!("background work did not finish in time; stopping it");
            self.tasks.abort_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn a_task_runs_when_woken_and_stops_with_the_runner() {
        let mut runner = Runner::new();
        let (wake, woken) = watch::channel(0u64);
        let rounds = Arc::new(AtomicUsize::new(0));
        let counted = rounds.clone();
        runner.repeat("test", Duration::from_secs(3600), Some(woken), move || {
            let counted = counted.clone();
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                Ok(false)
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(rounds.load(Ordering::SeqCst), 1);
        wake.send_modify(|n| *n += 1);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(rounds.load(Ordering::SeqCst), 2);
        runner.shutdown(Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn a_task_with_more_to_do_runs_again_at_once() {
        let mut runner = Runner::new();
        let rounds = Arc::new(AtomicUsize::new(0));
        let counted = rounds.clone();
        runner.repeat("test", Duration::from_secs(3600), None, move || {
            let counted = counted.clone();
            async move { Ok(counted.fetch_add(1, Ordering::SeqCst) < 4) }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(rounds.load(Ordering::SeqCst), 5);
        runner.shutdown(Duration::from_secs(1)).await;
    }
}
