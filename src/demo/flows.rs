//! A demo node's open login flows: session ids that may POST the login
//! form once, kept in bounded memory.

use std::collections::HashSet;

/// Open login flows (session ids that may POST the form once), bounded:
/// two generations of at most `FLOWS / 2` each, the older dropped whole
/// when the newer fills, so a load of form GETs that never POST (the
/// benchmark's) cannot grow a node without limit.
#[derive(Default)]
pub struct Flows {
    new: HashSet<String>,
    old: HashSet<String>,
}

const FLOWS: usize = 100_000;

impl Flows {
    pub fn insert(&mut self, id: String) {
        if self.new.len() >= FLOWS / 2 {
            self.old = std::mem::take(&mut self.new);
        }
        self.new.insert(id);
    }

    /// Ends a flow; whether it was open.
    pub fn remove(&mut self, id: &str) -> bool {
        self.new.remove(id) || self.old.remove(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_the_newest_kept() {
        let mut f = Flows::default();
        for i in 0..FLOWS + 10 {
            f.insert(i.to_string());
        }
        assert!(f.new.len() + f.old.len() <= FLOWS);
        assert!(f.remove(&(FLOWS + 9).to_string()));
        assert!(f.remove(&(FLOWS / 2).to_string()));
        assert!(!f.remove("0"));
        assert!(!f.remove(&(FLOWS + 9).to_string()), "a flow is used once");
    }
}
