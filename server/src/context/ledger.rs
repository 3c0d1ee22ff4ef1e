//! The budget ledger of one prompt: how the tokens left after the fixed costs are shared between
//! the context tiers, and how what one tier leaves unused flows to the next.
//!
//! Each tier has a share of the available tokens (a percentage; open files get what the others'
//! shares leave). Tiers are served in priority order, each granted its share plus what the tiers
//! before it left unused; whatever no tier used at the end widens the cursor's neighbourhood.

/// The parts of a prompt that share its budget, in the order they are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tier {
    /// The lines around the cursor: its share is the floor it gets before the other tiers.
    Neighbourhood,
    /// The headers of the enclosing scopes and the imports.
    Header,
    /// Definitions of names used near the cursor.
    Definitions,
    /// Recently edited and viewed chunks.
    Recent,
    /// Other open files: what the other shares leave.
    OpenFiles,
}

impl Tier {
    /// The tier's share of the available tokens, in percent; `None` for the remainder.
    fn percent(self) -> Option<usize> {
        match self {
            Tier::Neighbourhood => Some(45),
            Tier::Header => Some(20),
            Tier::Definitions => Some(20),
            Tier::Recent => Some(10),
            Tier::OpenFiles => None,
        }
    }
}

/// `share` percent of `n`, rounded down.
pub(crate) fn percent(n: usize, share: usize) -> usize {
    n * share / 100
}

/// What each tier may take, and what the tiers served so far used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ledger {
    n_available: usize,
    /// What the tiers served so far were granted and did not use.
    n_unused: usize,
    /// What the tiers served so far used.
    n_used: usize,
}

impl Ledger {
    /// A ledger over `n_available` tokens, nothing granted yet.
    pub(crate) fn new(n_available: usize) -> Ledger {
        Ledger {
            n_available,
            n_unused: 0,
            n_used: 0,
        }
    }

    /// The tier's own share, before anything flows to it.
    pub(crate) fn share(&self, tier: Tier) -> usize {
        match tier.percent() {
            Some(share) => percent(self.n_available, share),
            None => {
                let n_shared = [
                    Tier::Neighbourhood,
                    Tier::Header,
                    Tier::Definitions,
                    Tier::Recent,
                ]
                .iter()
                .map(|&tier| self.share(tier))
                .sum();
                self.n_available.saturating_sub(n_shared)
            }
        }
    }

    /// What the tier may use now: its share and what the tiers before it left unused.
    pub(crate) fn grant(&self, tier: Tier) -> usize {
        self.share(tier) + self.n_unused
    }

    /// Records that the tier used `n_used` tokens of its grant; what it left flows to the next.
    pub(crate) fn spend(&mut self, tier: Tier, n_used: usize) {
        self.n_unused = self.grant(tier).saturating_sub(n_used);
        self.n_used += n_used;
    }

    /// What no tier used: it widens the neighbourhood once every tier is served.
    pub(crate) fn rest(&self) -> usize {
        self.n_available.saturating_sub(self.n_used)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIERS: [Tier; 5] = [
        Tier::Neighbourhood,
        Tier::Header,
        Tier::Definitions,
        Tier::Recent,
        Tier::OpenFiles,
    ];

    #[test]
    fn the_shares_add_up_to_what_is_available() {
        for n_available in [0, 1, 7, 99, 100, 1000, 1999, 8191] {
            let ledger = Ledger::new(n_available);
            let total: usize = TIERS.iter().map(|&tier| ledger.share(tier)).sum();
            assert_eq!(total, n_available, "{n_available} tokens");
        }
        let ledger = Ledger::new(1000);
        assert_eq!(
            TIERS.map(|tier| ledger.share(tier)),
            [450, 200, 200, 100, 50]
        );
    }

    #[test]
    fn what_a_tier_leaves_flows_to_the_next_and_no_further() {
        let mut ledger = Ledger::new(1000);
        assert_eq!(ledger.grant(Tier::Header), 200);
        ledger.spend(Tier::Header, 120);
        // The header's 80 unused tokens go to the definitions.
        assert_eq!(ledger.grant(Tier::Definitions), 280);
        ledger.spend(Tier::Definitions, 280);
        // The definitions used all they were granted, so recent chunks get their share alone.
        assert_eq!(ledger.grant(Tier::Recent), 100);
        ledger.spend(Tier::Recent, 30);
        assert_eq!(ledger.grant(Tier::OpenFiles), 50 + 70);
        ledger.spend(Tier::OpenFiles, 100);
        assert_eq!(ledger.rest(), 1000 - (120 + 280 + 30 + 100));
    }

    #[test]
    fn a_tier_that_uses_more_than_its_grant_leaves_nothing_and_never_underflows() {
        let mut ledger = Ledger::new(100);
        ledger.spend(Tier::Header, 500);
        assert_eq!(ledger.grant(Tier::Definitions), 20);
        ledger.spend(Tier::Definitions, 0);
        assert_eq!(ledger.grant(Tier::Recent), 10 + 20);
        assert_eq!(ledger.rest(), 0);
    }

    #[test]
    fn an_empty_budget_grants_nothing() {
        let mut ledger = Ledger::new(0);
        for tier in TIERS {
            assert_eq!(ledger.grant(tier), 0);
            ledger.spend(tier, 0);
        }
        assert_eq!(ledger.rest(), 0);
    }
}
