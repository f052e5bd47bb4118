//! Deterministic write workloads for crash tests: the same seed gives the same operations, so
//! a checker can tell which contents each sector may hold after a crash.

/// One operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Fill `len` bytes at `offset` with `value` (0 = write zeroes).
    Write {
        /// Byte offset, sector aligned.
        offset: u64,
        /// Length, sector aligned.
        len: u64,
        /// Fill byte.
        value: u8,
    },
    /// Make everything before durable.
    Flush,
}

/// Generates `count` operations on a disk of `size` bytes (sector multiple).
pub fn generate(seed: u64, size: u64, count: usize) -> Vec<Op> {
    let mut s = seed | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let sectors = size / 512;
    (0..count)
        .map(|i| {
            if next() % 6 == 0 {
                return Op::Flush;
            }
            let len = (1 + next() % 512).min(sectors);
            let first = next() % (sectors - len + 1);
            let value = if next() % 8 == 0 { 0 } else { (i % 251 + 1) as u8 };
            Op::Write { offset: first * 512, len: len * 512, value }
        })
        .collect()
}

/// Which fill bytes each sector may hold after a crash: the value of the last write covering it
/// before the last completed flush (or `initial`), or the value of any write after that.
pub fn allowed_values(ops: &[Op], flushed_ops: usize, sector: u64, initial: u8) -> Vec<u8> {
    let mut durable = initial;
    let mut maybe = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        if let Op::Write { offset, len, value } = *op {
            if sector * 512 >= offset && sector * 512 < offset + len {
                if i < flushed_ops {
                    durable = value;
                } else {
                    maybe.push(value);
                }
            }
        }
    }
    maybe.push(durable);
    maybe
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_workload() {
        assert_eq!(generate(5, 1 << 20, 50), generate(5, 1 << 20, 50));
        assert_ne!(generate(5, 1 << 20, 50), generate(6, 1 << 20, 50));
    }

    #[test]
    fn allowed_values_distinguish_flushed_writes() {
        let ops = [
            Op::Write { offset: 0, len: 512, value: 1 },
            Op::Flush,
            Op::Write { offset: 0, len: 512, value: 2 },
        ];
        assert_eq!(allowed_values(&ops, 2, 0, 9), vec![2, 1]);
        assert_eq!(allowed_values(&ops, 0, 0, 9), vec![1, 2, 9]);
        assert_eq!(allowed_values(&ops, 3, 1, 9), vec![9]);
    }
}
