//! An instance's background work (delivering notifications, housekeeping): one runner whose
//! tasks stop when the server does, each finishing the round it is in.
//!
//! Background work gives way to requests. While the instance's foreground is saturated
//! (requests wait for a database connection), each round first waits for it to ease, up to
//! `REGISTRAR_BACKGROUND_YIELD_MS` (5 s): during a rush of registrations the deliveries, the
//! change log's consumers and housekeeping run once every few seconds each, on bigger
//! batches, instead of after every commit, and catch up once the rush is over. Registering is
//! what cannot wait; a message late by the length of the rush can (PostgreSQL's autovacuum
//! gives way to queries the same way, with its cost delay).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinSet;

pub struct Runner {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    pace: Pace,
}

/// How background rounds give way to a saturated foreground (see the module's comment).
#[derive(Clone, Default)]
pub struct Pace {
    /// Whether the foreground is saturated now; `None`: never waits.
    saturated: Option<Arc<dyn Fn() -> bool + Send + Sync>>,
    /// The longest a round waits.
    at_most: Duration,
}

impl Pace {
    /// How often a waiting round looks again.
    const LOOK: Duration = Duration::from_millis(20);

    pub fn new(saturated: impl Fn() -> bool + Send + Sync + 'static, at_most: Duration) -> Self {
        Pace {
            saturated: (!at_most.is_zero()).then(|| Arc::new(saturated) as Arc<_>),
            at_most,
        }
    }

    /// Waits while the foreground is saturated, up to `at_most`.
    pub async fn give_way(&self) {
        let Some(saturated) = &self.saturated else {
            return;
        };
        let until = Instant::now() + self.at_most;
        while saturated() && Instant::now() < until {
            tokio::time::sleep(Self::LOOK.min(until - Instant::now())).await;
        }
    }
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
            pace: Pace::default(),
        }
    }

    /// Rounds from now on give way to the foreground as `pace` says.
    pub fn give_way(&mut self, pace: Pace) {
        self.pace = pace;
    }

    /// How rounds give way, for a task that runs its own loop.
    pub fn pace(&self) -> Pace {
        self.pace.clone()
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
    /// do, otherwise when `wake` sees a new value or after `every`; either way once the
    /// foreground lets it (`Pace`). A failed round is logged and tried again `every` later.
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
        let pace = self.pace.clone();
        self.tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.changed() => return,
                    () = pace.give_way() => {}
                }
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
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

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

    fn counting(runner: &mut Runner, wake: Option<watch::Receiver<u64>>) -> Arc<AtomicUsize> {
        let rounds = Arc::new(AtomicUsize::new(0));
        let counted = rounds.clone();
        runner.repeat("test", Duration::from_secs(3600), wake, move || {
            let counted = counted.clone();
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                Ok(false)
            }
        });
        rounds
    }

    #[tokio::test]
    async fn a_round_waits_while_the_foreground_is_saturated() {
        let saturated = Arc::new(AtomicBool::new(true));
        let mut runner = Runner::new();
        let seen = saturated.clone();
        runner.give_way(Pace::new(
            move || seen.load(Ordering::SeqCst),
            Duration::from_secs(3600),
        ));
        let rounds = counting(&mut runner, None);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(rounds.load(Ordering::SeqCst), 0);
        saturated.store(false, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(rounds.load(Ordering::SeqCst), 1);
        runner.shutdown(Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn a_round_waits_no_longer_than_its_pace_allows() {
        let mut runner = Runner::new();
        runner.give_way(Pace::new(|| true, Duration::from_millis(200)));
        let (wake, woken) = watch::channel(0u64);
        let rounds = counting(&mut runner, Some(woken));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(rounds.load(Ordering::SeqCst), 0);
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(rounds.load(Ordering::SeqCst), 1);
        // Woken again: again after the longest wait, not before.
        wake.send_modify(|n| *n += 1);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(rounds.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(rounds.load(Ordering::SeqCst), 2);
        runner.shutdown(Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn a_pace_of_zero_never_waits() {
        let mut runner = Runner::new();
        runner.give_way(Pace::new(|| true, Duration::ZERO));
        let rounds = counting(&mut runner, None);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(rounds.load(Ordering::SeqCst), 1);
        runner.shutdown(Duration::from_secs(1)).await;
    }
}
