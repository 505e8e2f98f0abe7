//! Request coalescing inside one isolate: while one request fetches a key
//! from the origin, later requests for the same key wait for its answer
//! instead of sending their own. Only answers that may be shared (storable
//! ones) are handed to waiters; otherwise each waiter fetches for itself.
//!
//! Waiters poll a slot between short sleeps of their own rather than being
//! woken by the leader: the Workers runtime cancels a request that waits on
//! nothing but another request's work, as if it had hung.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use http::Response;

use crate::Body;

enum Slot {
    Waiting,
    /// `Some`: the leader's shareable answer; `None`: fetch it yourself.
    Done(Option<Response<Body>>),
}

type Slots = Vec<Rc<RefCell<Slot>>>;

/// The in-flight fetches of one isolate, by cache key (clones share them).
#[derive(Clone, Default)]
pub struct Coalescer {
    in_flight: Rc<RefCell<HashMap<String, Slots>>>,
}

/// What a request does for a key.
pub enum Role {
    /// Fetch from the origin, then `finish` the guard.
    Leader(LeaderGuard),
    /// Wait for the leader: poll [`Waiter::try_take`] between sleeps.
    Follower(Waiter),
}

impl Coalescer {
    pub fn join(&self, key: &str) -> Role {
        let mut in_flight = self.in_flight.borrow_mut();
        if let Some(slots) = in_flight.get_mut(key) {
            let slot = Rc::new(RefCell::new(Slot::Waiting));
            slots.push(Rc::clone(&slot));
            return Role::Follower(Waiter { slot });
        }
        in_flight.insert(key.to_owned(), Vec::new());
        Role::Leader(LeaderGuard {
            key: key.to_owned(),
            coalescer: self.clone(),
            finished: false,
        })
    }

    /// Number of keys being fetched right now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.borrow().len()
    }
}

/// A follower's view of the leader's result.
pub struct Waiter {
    slot: Rc<RefCell<Slot>>,
}

impl Waiter {
    /// `None` while the leader is still fetching; then `Some(answer)`, where
    /// an answer of `None` means "fetch it yourself".
    pub fn try_take(&self) -> Option<Option<Response<Body>>> {
        let mut slot = self.slot.borrow_mut();
        match std::mem::replace(&mut *slot, Slot::Waiting) {
            Slot::Waiting => None,
            Slot::Done(answer) => Some(answer),
        }
    }
}

/// Held by the request that fetches; waiters are released when it finishes,
/// or, if it is dropped early, told to fetch for themselves.
pub struct LeaderGuard {
    key: String,
    coalescer: Coalescer,
    finished: bool,
}

impl LeaderGuard {
    /// Hands `shared` (a copy each) to every waiter; `None` sends them to the origin.
    pub fn finish(mut self, shared: Option<&Response<Body>>) -> usize {
        self.finished = true;
        self.release(shared)
    }

    fn release(&self, shared: Option<&Response<Body>>) -> usize {
        let slots = self
            .coalescer
            .in_flight
            .borrow_mut()
            .remove(&self.key)
            .unwrap_or_default();
        for slot in &slots {
            *slot.borrow_mut() = Slot::Done(shared.map(crate::copy_response));
        }
        slots.len()
    }
}

impl Drop for LeaderGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.release(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leader(c: &Coalescer, key: &str) -> LeaderGuard {
        match c.join(key) {
            Role::Leader(guard) => guard,
            Role::Follower(_) => panic!("expected to lead {key}"),
        }
    }

    fn follower(c: &Coalescer, key: &str) -> Waiter {
        match c.join(key) {
            Role::Follower(waiter) => waiter,
            Role::Leader(_) => panic!("expected to follow {key}"),
        }
    }

    #[test]
    fn followers_receive_the_leaders_shareable_answer() {
        let c = Coalescer::default();
        let guard = leader(&c, "k");
        let (w1, w2) = (follower(&c, "k"), follower(&c, "k"));
        assert!(w1.try_take().is_none(), "still fetching");
        let answer = Response::new(Body::from_static(b"shared"));
        assert_eq!(guard.finish(Some(&answer)), 2);
        for w in [w1, w2] {
            let got = w.try_take().expect("done").expect("shared");
            assert_eq!(got.body().as_ref(), b"shared");
        }
        assert_eq!(c.in_flight(), 0);
    }

    #[test]
    fn unshareable_answers_send_followers_to_the_origin() {
        let c = Coalescer::default();
        let guard = leader(&c, "k");
        let w = follower(&c, "k");
        guard.finish(None);
        assert!(w.try_take().expect("done").is_none());
    }

    #[test]
    fn a_dropped_leader_releases_its_followers() {
        let c = Coalescer::default();
        let guard = leader(&c, "k");
        let w = follower(&c, "k");
        drop(guard);
        assert!(w.try_take().expect("done").is_none());
        let _again = leader(&c, "k");
    }

    #[test]
    fn different_keys_do_not_wait_for_each_other() {
        let c = Coalescer::default();
        let _a = leader(&c, "a");
        let _b = leader(&c, "b");
    }
}
