//! Where ids and randomness come from (DESIGN §13): uuids for rows, sessions and messages, and
//! seeds for jitter. Production draws from the operating system; a seeded source gives the same
//! ids in the same order on every run. Nothing outside the implementations here calls
//! `Uuid::new_v4` or an unseeded `fastrand` (`clippy.toml` refuses them elsewhere).

use std::fmt;
use std::sync::Mutex;
use uuid::Uuid;

/// A source of ids and random numbers.
pub trait Ids: Send + Sync + 'static {
    /// A fresh (version 4) uuid.
    fn uuid(&self) -> Uuid;
    /// A random 64-bit number.
    fn u64(&self) -> u64;
    /// A generator seeded from this source, for jitter and workloads.
    fn rng(&self) -> fastrand::Rng {
        fastrand::Rng::with_seed(self.u64())
    }
}

/// Randomness from the operating system: production.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemIds;

#[allow(clippy::disallowed_methods)] // the one place unseeded randomness is drawn
impl Ids for SystemIds {
    fn uuid(&self) -> Uuid {
        Uuid::new_v4()
    }

    fn u64(&self) -> u64 {
        fastrand::u64(..)
    }
}

/// Ids drawn from a seeded generator: the same seed gives the same sequence.
pub struct SeededIds {
    seed: u64,
    rng: Mutex<fastrand::Rng>,
}

impl SeededIds {
    pub fn new(seed: u64) -> SeededIds {
        SeededIds { seed, rng: Mutex::new(fastrand::Rng::with_seed(seed)) }
    }

    fn with_rng<T>(&self, f: impl FnOnce(&mut fastrand::Rng) -> T) -> T {
        f(&mut self.rng.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl fmt::Debug for SeededIds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeededIds").field("seed", &self.seed).finish()
    }
}

impl Ids for SeededIds {
    fn uuid(&self) -> Uuid {
        let bytes = self.with_rng(|rng| rng.u128(..)).to_le_bytes();
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }

    fn u64(&self) -> u64 {
        self.with_rng(|rng| rng.u64(..))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_the_same_version_4_ids_every_time() {
        let draw = |seed| {
            let ids = SeededIds::new(seed);
            (ids.uuid(), ids.uuid(), ids.u64(), ids.rng().u64(..))
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        let (a, b, ..) = draw(7);
        assert_ne!(a, b);
        assert_eq!(a.get_version_num(), 4);
    }

    #[test]
    fn system_ids_differ() {
        assert_ne!(SystemIds.uuid(), SystemIds.uuid());
    }
}
