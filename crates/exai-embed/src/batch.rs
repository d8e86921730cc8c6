//! Length-sorted batching: texts of similar length share a batch so padding (which costs as much
//! compute as real tokens) stays small, and results are put back in input order.

/// Groups the indices `0..lengths.len()` into batches of at most `batch_size`, longest texts first.
/// Sorting is stable, so equal lengths keep their input order.
pub(crate) fn plan(lengths: &[usize], batch_size: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
    order
        .chunks(batch_size.max(1))
        .map(<[usize]>::to_vec)
        .collect()
}

/// Puts the per-batch outputs (each in its batch's index order) back into input order.
/// Returns `None` if the outputs do not cover every index exactly once.
pub(crate) fn restore<T>(batches: &[Vec<usize>], outputs: Vec<Vec<T>>, n: usize) -> Option<Vec<T>> {
    let mut slots: Vec<Option<T>> = std::iter::repeat_with(|| None).take(n).collect();
    if batches.len() != outputs.len() {
        return None;
    }
    for (indices, values) in batches.iter().zip(outputs) {
        if indices.len() != values.len() {
            return None;
        }
        for (&i, v) in indices.iter().zip(values) {
            let slot = slots.get_mut(i)?;
            if slot.replace(v).is_some() {
                return None;
            }
        }
    }
    slots.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_sorted_by_length_and_bounded() {
        let lengths = [3, 10, 1, 7, 7, 2, 9];
        let batches = plan(&lengths, 3);
        assert_eq!(batches, vec![vec![1, 6, 3], vec![4, 0, 5], vec![2]]);
        assert!(plan(&[], 32).is_empty());
        // A zero batch size is treated as one rather than panicking.
        assert_eq!(plan(&[1, 2], 0).len(), 2);
    }

    #[test]
    fn order_is_restored() {
        let lengths = [3, 10, 1, 7, 7, 2, 9];
        let batches = plan(&lengths, 3);
        // Each "result" records the index it was computed for.
        let outputs: Vec<Vec<usize>> = batches.clone();
        let restored = restore(&batches, outputs, lengths.len());
        assert_eq!(restored, Some((0..lengths.len()).collect()));
    }

    #[test]
    fn restore_rejects_gaps_and_duplicates() {
        let batches = vec![vec![0, 1], vec![2]];
        assert_eq!(restore(&batches, vec![vec!['a', 'b']], 3), None);
        assert_eq!(restore(&batches, vec![vec!['a'], vec!['c']], 3), None);
        let dup = vec![vec![0, 0], vec![2]];
        assert_eq!(restore(&dup, vec![vec!['a', 'b'], vec!['c']], 3), None);
        assert_eq!(
            restore(&batches, vec![vec!['a', 'b'], vec!['c']], 3),
            Some(vec!['a', 'b', 'c'])
        );
    }
}
