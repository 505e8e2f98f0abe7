//! Debouncing and batching of tags, with time passed in: [`TagBatcher`] collects the tags
//! of changes arriving close together, drops duplicates, and releases them as one batch a
//! fixed window after the first one arrived, or at once when the batch is full.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Collects tags into batches. The window opens with the first tag of a batch and is not
/// extended by later ones, so a steady stream of writes still purges every `window`.
#[derive(Debug, Clone)]
pub struct TagBatcher {
    window: Duration,
    max_tags: usize,
    pending: BTreeSet<String>,
    opened_at: Option<Instant>,
}

impl TagBatcher {
    /// A batcher releasing tags `window` after the first of a batch, or as soon as
    /// `max_tags` distinct tags are waiting (at least 1).
    pub fn new(window: Duration, max_tags: usize) -> Self {
        Self {
            window,
            max_tags: max_tags.max(1),
            pending: BTreeSet::new(),
            opened_at: None,
        }
    }

    /// Add the tags of one change received at `now`; returns a full batch to send now.
    pub fn add<I, T>(&mut self, tags: I, now: Instant) -> Option<Vec<String>>
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.pending.extend(tags.into_iter().map(Into::into));
        if self.pending.is_empty() {
            return None;
        }
        self.opened_at.get_or_insert(now);
        if self.pending.len() >= self.max_tags {
            self.take_all()
        } else {
            None
        }
    }

    /// When the waiting batch is due, if one is waiting.
    pub fn due_at(&self) -> Option<Instant> {
        self.opened_at.map(|t| t + self.window)
    }

    /// The waiting batch, if its window has passed at `now`.
    pub fn take_due(&mut self, now: Instant) -> Option<Vec<String>> {
        match self.due_at() {
            Some(due) if now >= due => self.take_all(),
            _ => None,
        }
    }

    /// The waiting batch, due or not (on shutdown, or to merge it with a catch-up purge).
    pub fn take_all(&mut self) -> Option<Vec<String>> {
        self.opened_at = None;
        if self.pending.is_empty() {
            return None;
        }
        Some(std::mem::take(&mut self.pending).into_iter().collect())
    }

    /// Distinct tags waiting.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn changes_within_the_window_are_released_together_once() {
        let t0 = Instant::now();
        let mut b = TagBatcher::new(100 * MS, 500);
        assert_eq!(b.add(["product:1", "products"], t0), None);
        assert_eq!(b.add(["product:2", "products"], t0 + 40 * MS), None);
        assert_eq!(b.due_at(), Some(t0 + 100 * MS));
        assert_eq!(b.take_due(t0 + 99 * MS), None);
        assert_eq!(
            b.take_due(t0 + 100 * MS),
            Some(vec![
                "product:1".to_owned(),
                "product:2".to_owned(),
                "products".to_owned()
            ])
        );
        assert_eq!(b.due_at(), None);
        assert_eq!(b.take_due(t0 + 500 * MS), None);
    }

    #[test]
    fn later_changes_do_not_push_the_deadline_back() {
        let t0 = Instant::now();
        let mut b = TagBatcher::new(100 * MS, 500);
        b.add(["a"], t0);
        b.add(["b"], t0 + 90 * MS);
        assert_eq!(b.due_at(), Some(t0 + 100 * MS));
        assert_eq!(b.take_due(t0 + 100 * MS).map(|v| v.len()), Some(2));
        b.add(["c"], t0 + 150 * MS);
        assert_eq!(b.due_at(), Some(t0 + 250 * MS));
    }

    #[test]
    fn a_full_batch_is_released_at_once() {
        let t0 = Instant::now();
        let mut b = TagBatcher::new(Duration::from_secs(60), 3);
        assert_eq!(b.add(["a", "b"], t0), None);
        assert_eq!(b.add(["a", "b"], t0), None, "duplicates do not count");
        assert_eq!(
            b.add(["c"], t0),
            Some(vec!["a".to_owned(), "b".to_owned(), "c".to_owned()])
        );
        assert!(b.is_empty());
        assert_eq!(b.due_at(), None);
    }

    #[test]
    fn a_change_without_tags_opens_no_window() {
        let mut b = TagBatcher::new(100 * MS, 10);
        assert_eq!(b.add(Vec::<String>::new(), Instant::now()), None);
        assert_eq!(b.due_at(), None);
        assert_eq!(b.take_all(), None);
    }
}
