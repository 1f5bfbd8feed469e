//! [`Fingerprints`]: a compact set of 64-bit fingerprints that may answer
//! "present" for one it does not hold (rarely), never "absent" for one it
//! holds.

/// A split-block Bloom filter (the layout of Parquet's bloom filters): each
/// fingerprint sets 8 bits in one 32-byte block, so a lookup reads one
/// block, one cache line, whatever the size. With 16 bits per fingerprint
/// about 1 lookup in 1,000 of an absent fingerprint answers "present".
/// It grows with what it holds (doubling, rebuilt from the fingerprints,
/// which are kept in insertion order: appended, read only to rebuild).
#[derive(Debug, Default, Clone)]
pub struct Fingerprints {
    blocks: Vec<Block>,
    all: Vec<u64>,
}

#[derive(Debug, Default, Clone, Copy)]
#[repr(align(32))]
struct Block([u32; 8]);

/// The salts of Parquet's split-block Bloom filter.
const SALT: [u32; 8] = [
    0x47b6_137b,
    0x4497_4d91,
    0x8824_ad5b,
    0xa2b7_289d,
    0x7054_95c7,
    0x2df1_424b,
    0x9efc_4947,
    0x5c6b_fb31,
];

/// Filter bits per fingerprint held, at least.
const BITS_PER_FINGERPRINT: usize = 16;

/// Blocks of the first filter.
const MIN_BLOCKS: usize = 64;

impl Block {
    /// The bit of each word that `fingerprint` sets.
    fn mask(fingerprint: u64) -> [u32; 8] {
        let x = fingerprint as u32;
        std::array::from_fn(|i| 1 << (x.wrapping_mul(SALT[i]) >> 27))
    }
}

impl Fingerprints {
    /// Fingerprints added.
    pub fn len(&self) -> usize {
        self.all.len()
    }

    /// True when none was added.
    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// The block of `fingerprint` (its high 32 bits, scaled to the blocks).
    fn block(&self, fingerprint: u64) -> usize {
        (((fingerprint >> 32) * self.blocks.len() as u64) >> 32) as usize
    }

    /// False when `fingerprint` was never added; true when it was (and,
    /// rarely, when it was not).
    pub fn may_contain(&self, fingerprint: u64) -> bool {
        if self.blocks.is_empty() {
            return false;
        }
        let b = &self.blocks[self.block(fingerprint)].0;
        let m = Block::mask(fingerprint);
        b.iter().zip(m).all(|(w, m)| w & m != 0)
    }

    /// Adds `fingerprint`.
    pub fn insert(&mut self, fingerprint: u64) {
        self.all.push(fingerprint);
        if self.all.len() * BITS_PER_FINGERPRINT > self.blocks.len() * 256 {
            let n = (self.all.len() * BITS_PER_FINGERPRINT * 2 / 256)
                .next_power_of_two()
                .max(MIN_BLOCKS);
            self.blocks = vec![Block::default(); n];
            for i in 0..self.all.len() {
                self.set(self.all[i]);
            }
        } else {
            self.set(fingerprint);
        }
    }

    fn set(&mut self, fingerprint: u64) {
        let i = self.block(fingerprint);
        let m = Block::mask(fingerprint);
        for (w, m) in self.blocks[i].0.iter_mut().zip(m) {
            *w |= m;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    fn h(i: u64) -> u64 {
        foldhash::fast::FixedState::with_seed(7).hash_one(i)
    }

    #[test]
    fn holds_what_was_added_through_growth_and_rarely_more() {
        let mut f = Fingerprints::default();
        assert!(f.is_empty() && !f.may_contain(h(1)));
        for i in 0..100_000 {
            f.insert(h(i));
            // Every earlier one is still there after each rebuild.
            if i % 9_973 == 0 {
                assert!((0..=i).all(|j| f.may_contain(h(j))), "after {i}");
            }
        }
        assert_eq!(f.len(), 100_000);
        assert!((0..100_000).all(|i| f.may_contain(h(i))));
        let false_positives = (100_000..1_100_000)
            .filter(|&i| f.may_contain(h(i)))
            .count();
        // At 16 to 32 bits each, at most about 1 in 1,000 (this sequence
        // gives 120 in 1,000,000 at 100,000 held).
        assert!(false_positives < 2_000, "{false_positives} of 1,000,000");
    }
}
