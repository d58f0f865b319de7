//! Long jobs in bounded slices: a reload compiles 100,000 list entries,
//! which must not hold the one-threaded loop for more than a few
//! milliseconds. The job is an `async fn` that reports its work to a
//! [`Pacer`]; when a slice is over the pacer awaits its pause (in the
//! daemon `tokio::task::yield_now`, so every session and every event of
//! the main loop is served between slices). Start-up and `check-config`
//! run the same job without pauses ([`Pacer::unpaced`], [`run_now`]): one
//! code path, no runtime needed.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// Entries (list lines, compiled entries) per slice of a counting pacer
/// ([`Pacer::new`], for tests and traces): about 1–2 ms on the reference
/// machine (0.4 µs a line parsed, 0.3 µs an entry compiled).
pub const SLICE: usize = 4096;

/// Work per slice of the daemon's pacer ([`Pacer::timed`]): the loop's lag
/// target is 5 ms, and a slice may overrun by one unit of work (a checked
/// batch of entries, one regular expression) and by the scheduler.
pub const BUDGET: Duration = Duration::from_millis(1);

/// Units of cheap work between two looks at the clock (64 list lines are
/// ~25 µs; a look is ~25 ns).
const CHECK_EVERY: usize = 64;

type Pause<'a> = Box<dyn FnMut() -> Pin<Box<dyn Future<Output = ()> + 'a>> + 'a>;

/// When a slice is over.
#[derive(Debug, Clone, Copy)]
enum Limit {
    /// After this many units (deterministic: tests).
    Count(usize),
    /// Once this much time has passed since the slice began.
    Time(Duration),
    /// Never: the job runs in one go.
    Never,
}

pub struct Pacer<'a> {
    limit: Limit,
    done: usize,
    began: Instant,
    pauses: usize,
    pause: Option<Pause<'a>>,
}

impl<'a> Pacer<'a> {
    /// Pauses with `pause()` after every `slice` units of work.
    pub fn new<F: Future<Output = ()> + 'a>(
        slice: usize,
        pause: impl FnMut() -> F + 'a,
    ) -> Pacer<'a> {
        Pacer::with_limit(Limit::Count(slice.max(1)), pause)
    }

    /// Pauses with `pause()` once `budget` has passed since the slice
    /// began: the clock is read every few cheap units and after each
    /// costly one ([`Pacer::step_costly`]), so a slice lasts about
    /// `budget` however fast or busy the machine is.
    pub fn timed<F: Future<Output = ()> + 'a>(
        budget: Duration,
        pause: impl FnMut() -> F + 'a,
    ) -> Pacer<'a> {
        Pacer::with_limit(Limit::Time(budget), pause)
    }

    fn with_limit<F: Future<Output = ()> + 'a>(
        limit: Limit,
        mut pause: impl FnMut() -> F + 'a,
    ) -> Pacer<'a> {
        Pacer {
            limit,
            done: 0,
            began: Instant::now(),
            pauses: 0,
            pause: Some(Box::new(move || Box::pin(pause()))),
        }
    }

    /// Never pauses: the job runs in one go.
    pub fn unpaced() -> Pacer<'static> {
        Pacer {
            limit: Limit::Never,
            done: 0,
            began: Instant::now(),
            pauses: 0,
            pause: None,
        }
    }

    /// Counts one cheap unit of work; pauses when the slice is over.
    pub async fn step(&mut self) {
        self.done += 1;
        let over = match self.limit {
            Limit::Count(n) => self.done >= n,
            Limit::Time(budget) => {
                self.done.is_multiple_of(CHECK_EVERY) && self.began.elapsed() >= budget
            }
            Limit::Never => false,
        };
        if over {
            self.pause().await;
        }
    }

    /// Counts one costly unit (a regular expression compiled): a counting
    /// pacer ends its slice after each, a timed one looks at the clock.
    pub async fn step_costly(&mut self) {
        let over = match self.limit {
            Limit::Count(_) => true,
            Limit::Time(budget) => self.began.elapsed() >= budget,
            Limit::Never => false,
        };
        if over {
            self.pause().await;
        } else {
            self.done += 1;
        }
    }

    /// How much costly work may go into one slice: `None` when there are
    /// no slices, zero for a counting pacer (one costly unit per slice).
    pub fn budget(&self) -> Option<Duration> {
        match self.limit {
            Limit::Count(_) => Some(Duration::ZERO),
            Limit::Time(budget) => Some(budget),
            Limit::Never => None,
        }
    }

    /// Pauses now (between phases of unequal cost), if pausing at all.
    pub async fn pause(&mut self) {
        self.done = 0;
        if let Some(pause) = &mut self.pause {
            self.pauses += 1;
            pause().await;
        }
        self.began = Instant::now();
    }

    /// How many times the job paused.
    pub fn pauses(&self) -> usize {
        self.pauses
    }
}

/// Runs a job whose pacer never pauses to completion, here and now.
pub fn run_now<T>(job: impl Future<Output = T>) -> T {
    let mut job = std::pin::pin!(job);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        // An unpaced job is ready at the first poll; a pending one (a
        // pacer that does pause) is polled again until it is done.
        if let Poll::Ready(v) = job.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn pauses_after_each_full_slice() {
        let count = Cell::new(0);
        let mut pacer = Pacer::new(3, || {
            count.set(count.get() + 1);
            std::future::ready(())
        });
        run_now(async {
            for _ in 0..10 {
                pacer.step().await;
            }
        });
        assert_eq!((count.get(), pacer.pauses()), (3, 3));
        let mut unpaced = Pacer::unpaced();
        run_now(async {
            for _ in 0..10 {
                unpaced.step().await;
            }
            unpaced.pause().await;
        });
        assert_eq!(unpaced.pauses(), 0);
        assert_eq!(unpaced.budget(), None);
    }

    /// The timed pacer looks at the clock every `CHECK_EVERY` cheap units
    /// and after every costly one: with a zero budget each look ends the
    /// slice, with a budget of an hour none does.
    #[test]
    fn a_timed_pacer_ends_slices_when_its_budget_is_spent() {
        let count = Cell::new(0);
        let mut spent = Pacer::timed(Duration::ZERO, || {
            count.set(count.get() + 1);
            std::future::ready(())
        });
        run_now(async {
            for _ in 0..10 * CHECK_EVERY + 1 {
                spent.step().await;
            }
            spent.step_costly().await;
        });
        assert_eq!((count.get(), spent.pauses()), (11, 11));
        let mut hour = Pacer::timed(Duration::from_secs(3600), || std::future::ready(()));
        run_now(async {
            for _ in 0..10 * CHECK_EVERY {
                hour.step().await;
                hour.step_costly().await;
            }
        });
        assert_eq!(hour.pauses(), 0);
        assert_eq!(hour.budget(), Some(Duration::from_secs(3600)));
    }
}
