//! A request's value made current on the thread for one poll of the request's future:
//! what a `tracing` span would give, without the span's cost. The request id, the
//! captured queries and the profile each live in such a slot. The value is moved in and
//! out, not cloned: a poll costs two thread-local swaps.
//!
//! [`in_current_request`] takes all three along into work a handler spawns, which
//! otherwise runs outside the request.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::thread::LocalKey;

/// `future` run as part of the request being polled now: while it is polled, its log
/// lines carry the request id ([`RequestIdLayer`](crate::hygiene::RequestIdLayer)), its
/// spans and `Timer` blocks go into the request's profile (a sampled request, with
/// `SpanProfileLayer`; feature `profiling`) and its statements count as the request's
/// queries (feature `db`). For work a handler hands to `tokio::spawn`, which otherwise
/// runs outside any request: `tokio::spawn(cachefront_origin::in_current_request(fut))`.
/// Outside a request it changes nothing. Work still running after the response goes
/// on logging with the id; what it records then is not in the request's report.
pub fn in_current_request<F: Future>(future: F) -> InCurrentRequest<F> {
    InCurrentRequest {
        inner: future,
        carried: Carried {
            id: crate::hygiene::CarriedId::current(),
            #[cfg(feature = "profiling")]
            profile: crate::profiling::current_profile(),
            #[cfg(feature = "db")]
            queries: crate::db::CarriedQueries::current(),
        },
    }
}

/// What [`in_current_request`] takes along.
struct Carried {
    id: crate::hygiene::CarriedId,
    #[cfg(feature = "profiling")]
    profile: Option<crate::profiling::RequestProfile>,
    #[cfg(feature = "db")]
    queries: crate::db::CarriedQueries,
}

impl Carried {
    fn enter<T>(&mut self, f: impl FnOnce() -> T) -> T {
        #[cfg(feature = "db")]
        let f = {
            let queries = &mut self.queries;
            move || queries.enter(f)
        };
        #[cfg(feature = "profiling")]
        let f = {
            let profile = &mut self.profile;
            move || {
                if profile.is_some() {
                    crate::profiling::spans::with_current(profile, f)
                } else {
                    f()
                }
            }
        };
        self.id.enter(f)
    }
}

pin_project_lite::pin_project! {
    /// Future made by [`in_current_request`].
    pub struct InCurrentRequest<F> {
        #[pin]
        inner: F,
        carried: Carried,
    }
}

impl<F: Future> Future for InCurrentRequest<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let inner = this.inner;
        this.carried.enter(|| inner.poll(cx))
    }
}

/// Runs `f` with `value` current in `slot` on this thread, then moves it back into
/// `value` (with whatever `f` changed) and restores what was current before, even if `f`
/// panics, so a panicking handler cannot leave its value current for whatever this
/// thread polls next.
pub(crate) fn with_current<T: 'static, R>(
    slot: &'static LocalKey<RefCell<Option<T>>>,
    value: &mut Option<T>,
    f: impl FnOnce() -> R,
) -> R {
    struct Restore<'a, T: 'static> {
        slot: &'static LocalKey<RefCell<Option<T>>>,
        value: &'a mut Option<T>,
        previous: Option<T>,
    }
    impl<T: 'static> Drop for Restore<'_, T> {
        fn drop(&mut self) {
            let previous = self.previous.take();
            *self.value = self.slot.with(|c| c.replace(previous));
        }
    }
    let previous = slot.with(|c| c.replace(value.take()));
    let _restore = Restore {
        slot,
        value,
        previous,
    };
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        static SLOT: RefCell<Option<u32>> = const { RefCell::new(None) };
    }

    #[test]
    fn the_value_is_current_only_inside_and_comes_back_with_its_changes() {
        let mut value = Some(1);
        let seen = with_current(&SLOT, &mut value, || {
            SLOT.with(|c| {
                let mut c = c.borrow_mut();
                let seen = *c;
                *c = Some(2);
                seen
            })
        });
        assert_eq!(seen, Some(1));
        assert_eq!(value, Some(2));
        assert_eq!(SLOT.with(|c| *c.borrow()), None);
    }

    #[test]
    fn a_panic_inside_restores_the_previous_value() {
        let mut outer = Some(1);
        with_current(&SLOT, &mut outer, || {
            let mut inner = Some(7);
            let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                with_current(&SLOT, &mut inner, || panic!("handler panicked"))
            }));
            assert!(caught.is_err());
            assert_eq!(SLOT.with(|c| *c.borrow()), Some(1));
            assert_eq!(inner, Some(7));
        });
        assert_eq!(SLOT.with(|c| *c.borrow()), None);
    }
}
