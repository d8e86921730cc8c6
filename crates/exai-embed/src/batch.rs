//! Length-sorted batching: texts of similar length share a batch so padding (which costs as much
//! compute as real tokens) stays small, and results are put back in input order.
//!
//! A batch can also be bounded by its padded size (rows × longest text): the runtime's working
//! memory for one forward pass grows with that size times the length (attention holds
//! rows × heads × length² scores), so a token budget caps the memory of long passages while short
//! texts still get wide batches.

/// Groups the indices `0..lengths.len()` into batches of at most `batch_size`, longest texts first.
/// Sorting is stable, so equal lengths keep their input order.
pub(crate) fn plan(lengths: &[usize], batch_size: usize) -> Vec<Vec<usize>> {
    plan_within(lengths, batch_size, 0)
}

/// [`plan`] with each batch also holding at most `max_tokens` padded tokens (rows × its longest
/// text; a text longer than that still gets a batch of its own). 0: no token bound.
pub(crate) fn plan_within(
    lengths: &[usize],
    batch_size: usize,
    max_tokens: usize,
) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
    let batch_size = batch_size.max(1);
    let mut batches: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    // Longest first, so a batch's first text sets its padded width.
    let mut width = 0;
    for i in order {
        let fits = current.len() < batch_size
            && (max_tokens == 0 || (current.len() + 1) * width.max(lengths[i]) <= max_tokens);
        if !current.is_empty() && !fits {
            batches.push(std::mem::take(&mut current));
        }
        if current.is_empty() {
            width = lengths[i];
        }
        current.push(i);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
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
    fn a_token_budget_narrows_batches_of_long_texts_only() {
        let lengths = [256, 20, 256, 256, 20, 20, 20, 20, 100];
        // 512 tokens: two 256-piece texts per batch, five 100- or 20-piece ones.
        let batches = plan_within(&lengths, 32, 512);
        assert_eq!(batches, vec![vec![0, 2], vec![3, 8], vec![1, 4, 5, 6, 7]]);
        for batch in &batches {
            let width = batch.iter().map(|&i| lengths[i]).max().unwrap();
            assert!(batch.len() * width <= 512, "{batch:?}");
        }
        // The row cap still applies, and no budget means rows only.
        assert_eq!(plan_within(&lengths, 3, 100_000), plan(&lengths, 3));
        assert_eq!(plan_within(&lengths, 3, 0), plan(&lengths, 3));
        // A text longer than the budget is embedded alone rather than dropped.
        assert_eq!(plan_within(&[300, 10], 32, 128), vec![vec![0], vec![1]]);
        assert!(plan_within(&[], 32, 128).is_empty());
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
