//! KV-cache session manager: which tokens each sequence (slot) of a context holds, which slot a
//! new prompt should use, and how much of its cache the prompt can keep.
//!
//! A slot's `tokens` always equal what the backend's sequence holds: callers extend them only
//! after a successful `evaluate` and clear them when an evaluate fails. Scheduling (who runs when)
//! is `scheduler`'s business; this module only does the bookkeeping.

use super::backend::{Backend, Token};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Slot {
    pub seq: u32,
    pub tokens: Vec<Token>,
    /// How many of `tokens` the last prompt placed here had; those after it were generated (an
    /// answer, which the next keystroke's prompt usually drops).
    pub n_prompt: usize,
    /// The document that used the slot last.
    pub document: Option<String>,
    /// Logical clock of the last use; smaller is older.
    pub last_used: u64,
    /// Which client (a language server sharing the engine) used the slot last; 0 in process.
    pub client: u32,
}

#[derive(Debug)]
pub(crate) struct Sessions {
    pub slots: Vec<Slot>,
    clock: u64,
}

/// How a prompt was placed in a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Placement {
    pub slot_idx: usize,
    /// Cached tokens kept: evaluation starts at this position.
    pub n_past: u32,
}

pub(crate) fn common_prefix_len(cached: &[Token], tokens: &[Token]) -> usize {
    cached
        .iter()
        .zip(tokens)
        .take_while(|(cached, new)| cached == new)
        .count()
}

impl Slot {
    /// The tokens of the last prompt placed here, as far as they were evaluated.
    pub(crate) fn prompt_tokens(&self) -> &[Token] {
        &self.tokens[..self.n_prompt.min(self.tokens.len())]
    }
}

impl Sessions {
    pub(crate) fn new(n_seq: u32) -> Sessions {
        Sessions {
            slots: (0..n_seq)
                .map(|seq| Slot {
                    seq,
                    tokens: Vec::new(),
                    n_prompt: 0,
                    document: None,
                    last_used: 0,
                    client: 0,
                })
                .collect(),
            clock: 0,
        }
    }

    /// `choose_for` with every request from one client.
    #[cfg(test)]
    pub(crate) fn choose(&self, document: &str, tokens: &[Token], busy: &[usize]) -> usize {
        self.choose_for(0, document, tokens, busy)
    }

    /// Chooses the slot for `tokens` from `document` of `client`, among the slots not in `busy`
    /// (there is one at least): the slot sharing the longest prefix when that covers at least
    /// half the prompt, else the document's own slot, else an empty one, else one to evict.
    ///
    /// Eviction keeps each client to its share of the slots (the slots divided among the
    /// clients holding some, rounded up): a client at its share gives up its own least recently
    /// used slot, and one under it takes the least recently used slot of a client over its share,
    /// so one window opening many files cannot push every other window's cache out.
    pub(crate) fn choose_for(
        &self,
        client: u32,
        document: &str,
        tokens: &[Token],
        busy: &[usize],
    ) -> usize {
        let same_document =
            |slot: &Slot| slot.client == client && slot.document.as_deref() == Some(document);
        let free = || {
            self.slots
                .iter()
                .enumerate()
                .filter(|(slot_idx, _)| !busy.contains(slot_idx))
        };
        let best = free()
            .max_by_key(|(_, slot)| {
                (
                    common_prefix_len(&slot.tokens, tokens),
                    same_document(slot),
                    slot.last_used,
                )
            })
            .map(|(slot_idx, slot)| (slot_idx, common_prefix_len(&slot.tokens, tokens)));
        if let Some((slot_idx, n_common)) = best {
            if n_common > 0 && n_common * 2 >= tokens.len() {
                return slot_idx;
            }
        }
        if let Some((slot_idx, _)) = free().find(|(_, slot)| same_document(slot)) {
            return slot_idx;
        }
        if let Some((slot_idx, _)) = free().find(|(_, slot)| slot.tokens.is_empty()) {
            return slot_idx;
        }
        let held = |owner: u32| {
            self.slots
                .iter()
                .filter(|slot| !slot.tokens.is_empty() && slot.client == owner)
                .count()
        };
        let mut clients: Vec<u32> = self
            .slots
            .iter()
            .filter(|slot| !slot.tokens.is_empty())
            .map(|slot| slot.client)
            .collect();
        clients.push(client);
        clients.sort_unstable();
        clients.dedup();
        let share = self.slots.len().div_ceil(clients.len());
        let least_recent = |eligible: &dyn Fn(&Slot) -> bool| {
            free()
                .filter(|(_, slot)| eligible(slot))
                .min_by_key(|(_, slot)| slot.last_used)
                .map(|(slot_idx, _)| slot_idx)
        };
        let preferred = if held(client) >= share {
            least_recent(&|slot: &Slot| slot.client == client)
        } else {
            least_recent(&|slot: &Slot| slot.client != client && held(slot.client) > share)
        };
        preferred
            .or_else(|| least_recent(&|_: &Slot| true))
            .expect("a context has at least one free sequence")
    }

    /// Makes slot `slot_idx` ready to evaluate `tokens` (non-empty) for `document`: keeps the
    /// longest common prefix, always leaving at least one token to evaluate so there are logits,
    /// and drops the rest of the cache (the whole sequence when the backend cannot cut partway).
    pub(crate) fn place<B: Backend>(
        &mut self,
        backend: &mut B,
        slot_idx: usize,
        (client, document): (u32, &str),
        tokens: &[Token],
    ) -> Placement {
        self.clock += 1;
        let slot = &mut self.slots[slot_idx];
        slot.last_used = self.clock;
        slot.client = client;
        slot.document = Some(document.to_owned());
        slot.n_prompt = tokens.len();
        let mut n_past = common_prefix_len(&slot.tokens, tokens);
        if n_past == tokens.len() {
            n_past = n_past.saturating_sub(1);
        }
        if slot.tokens.len() > n_past {
            if !backend.trim(slot.seq, n_past as u32) {
                backend.clear(slot.seq);
                n_past = 0;
            }
            slot.tokens.truncate(n_past);
        }
        Placement {
            slot_idx,
            n_past: n_past as u32,
        }
    }

    /// Forgets a slot's contents after the backend lost them (a failed evaluate).
    pub(crate) fn reset<B: Backend>(&mut self, backend: &mut B, slot_idx: usize) {
        let slot = &mut self.slots[slot_idx];
        backend.clear(slot.seq);
        slot.tokens.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::backend::fake::{tokens, Call, Fake, FakeOptions};

    fn fake(n_seq: u32, partial_trim_fails: bool) -> Fake {
        Fake::new(FakeOptions {
            n_seq,
            partial_trim_fails,
            ..FakeOptions::default()
        })
    }

    /// Fills slot `slot_idx` with `text` as if it had been evaluated for `document`.
    fn fill(
        sessions: &mut Sessions,
        backend: &mut Fake,
        slot_idx: usize,
        document: &str,
        text: &str,
    ) {
        let placement = sessions.place(backend, slot_idx, (0, document), &tokens(text));
        let new_tokens = &tokens(text)[placement.n_past as usize..];
        backend
            .evaluate(sessions.slots[slot_idx].seq, placement.n_past, new_tokens)
            .unwrap();
        sessions.slots[slot_idx]
            .tokens
            .extend_from_slice(new_tokens);
    }

    #[test]
    fn longest_prefix_is_kept_and_the_tail_trimmed() {
        let mut backend = fake(2, false);
        let mut sessions = Sessions::new(2);
        fill(
            &mut sessions,
            &mut backend,
            0,
            "a",
            "fn main() { let x = 1; }",
        );
        backend.state.lock().unwrap().take_calls();
        let placement = sessions.place(&mut backend, 0, (0, "a"), &tokens("fn main() { let y"));
        assert_eq!(placement.n_past, 16);
        assert_eq!(
            backend.state.lock().unwrap().take_calls(),
            vec![Call::Trim { seq: 0, n_keep: 16 }]
        );
        assert_eq!(sessions.slots[0].tokens, tokens("fn main() { let "));
    }

    #[test]
    fn identical_prompt_still_evaluates_one_token() {
        let mut backend = fake(1, false);
        let mut sessions = Sessions::new(1);
        fill(&mut sessions, &mut backend, 0, "a", "abcdef");
        let placement = sessions.place(&mut backend, 0, (0, "a"), &tokens("abcdef"));
        assert_eq!(placement.n_past, 5);
        assert_eq!(sessions.slots[0].tokens.len(), 5);
    }

    #[test]
    fn failed_partial_trim_clears_the_sequence() {
        let mut backend = fake(1, true);
        let mut sessions = Sessions::new(1);
        fill(&mut sessions, &mut backend, 0, "a", "abcdef");
        backend.state.lock().unwrap().take_calls();
        let placement = sessions.place(&mut backend, 0, (0, "a"), &tokens("abcXYZ"));
        assert_eq!(placement.n_past, 0);
        assert_eq!(
            backend.state.lock().unwrap().take_calls(),
            vec![Call::Trim { seq: 0, n_keep: 3 }, Call::Clear { seq: 0 }]
        );
        assert!(sessions.slots[0].tokens.is_empty());
    }

    #[test]
    fn slot_choice_prefers_prefix_then_document_then_empty_then_lru() {
        let mut backend = fake(3, false);
        let mut sessions = Sessions::new(3);
        fill(&mut sessions, &mut backend, 0, "a", "aaaaaaaa");
        fill(&mut sessions, &mut backend, 1, "b", "bbbbbbbb");
        // Best prefix match, whatever the document.
        assert_eq!(sessions.choose("c", &tokens("bbbbbbbbcc"), &[]), 1);
        // Too little in common: the document's own slot.
        assert_eq!(sessions.choose("a", &tokens("xyz"), &[]), 0);
        // A new document takes the empty slot.
        assert_eq!(sessions.choose("c", &tokens("xyz"), &[]), 2);
        fill(&mut sessions, &mut backend, 2, "c", "cccccccc");
        // All full: the least recently used one ("a", filled first).
        assert_eq!(sessions.choose("d", &tokens("xyz"), &[]), 0);
        fill(&mut sessions, &mut backend, 0, "a", "aaaaaaaaa");
        assert_eq!(sessions.choose("d", &tokens("xyz"), &[]), 1);
        // A slot another completion is using is never chosen, however well it matches.
        assert_eq!(sessions.choose("c", &tokens("bbbbbbbbcc"), &[1]), 2);
        assert_eq!(sessions.choose("b", &tokens("bbbbbbbb"), &[1]), 2);
    }

    /// Fills slot `slot_idx` for `client` with `text` (each text starts with a character of its
    /// own, so no prefix is shared).
    fn fill_for(
        sessions: &mut Sessions,
        backend: &mut Fake,
        client: u32,
        slot_idx: usize,
        document: &str,
        text: &str,
    ) {
        fill(sessions, backend, slot_idx, document, text);
        sessions.slots[slot_idx].client = client;
    }

    #[test]
    fn eviction_keeps_each_client_to_its_share_of_the_slots() {
        let mut backend = fake(4, false);
        let mut sessions = Sessions::new(4);
        for (slot_idx, (document, text)) in [("a1", "1a"), ("a2", "2a"), ("a3", "3a"), ("a4", "4a")]
            .iter()
            .enumerate()
        {
            fill_for(&mut sessions, &mut backend, 1, slot_idx, document, text);
        }
        // A second window under its share (2 of 4) takes the first window's oldest slots.
        assert_eq!(sessions.choose_for(2, "b1", &tokens("5b"), &[]), 0);
        fill_for(&mut sessions, &mut backend, 2, 0, "b1", "5b");
        assert_eq!(sessions.choose_for(2, "b2", &tokens("6b"), &[]), 1);
        fill_for(&mut sessions, &mut backend, 2, 1, "b2", "6b");
        // At its share, it gives up its own oldest slot; the first window keeps two.
        assert_eq!(sessions.choose_for(2, "b3", &tokens("7b"), &[]), 0);
        // And so does the first window, now at its share.
        assert_eq!(sessions.choose_for(1, "a5", &tokens("8a"), &[]), 2);
        // The same document name from another window is another document.
        assert_eq!(sessions.choose_for(2, "a4", &tokens("9c"), &[]), 0);
    }
}
