//! Pooling and normalisation exactly as sentence-transformers' `Pooling` and `Normalize` modules
//! compute them, on plain slices so they are testable without a model.

use serde::Deserialize;

/// How token vectors become one sentence vector (`1_Pooling/config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pooling {
    /// Mean of the token vectors under the attention mask.
    Mean,
    /// The first token (`[CLS]`).
    Cls,
    /// Element-wise maximum over the tokens under the mask.
    Max,
    /// Sum under the mask divided by the square root of the token count.
    MeanSqrtLen,
}

#[derive(Debug, Default, Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
    #[serde(default)]
    pooling_mode_weightedmean_tokens: bool,
    #[serde(default)]
    pooling_mode_lasttoken: bool,
}

impl Pooling {
    /// Parses `1_Pooling/config.json`. sentence-transformers concatenates the vectors of several
    /// modes when more than one is on; exai supports exactly one.
    pub(crate) fn from_config_json(text: &str) -> Result<Pooling, String> {
        let config: PoolingConfig =
            serde_json::from_str(text).map_err(|e| format!("pooling config: {e}"))?;
        if config.pooling_mode_weightedmean_tokens || config.pooling_mode_lasttoken {
            return Err("weighted-mean and last-token pooling are not supported".into());
        }
        let modes = [
            (config.pooling_mode_mean_tokens, Pooling::Mean),
            (config.pooling_mode_cls_token, Pooling::Cls),
            (config.pooling_mode_max_tokens, Pooling::Max),
            (
                config.pooling_mode_mean_sqrt_len_tokens,
                Pooling::MeanSqrtLen,
            ),
        ];
        let mut on = modes
            .iter()
            .filter(|(enabled, _)| *enabled)
            .map(|(_, m)| *m);
        match (on.next(), on.next()) {
            (Some(mode), None) => Ok(mode),
            (None, _) => Err("the pooling config enables no pooling mode".into()),
            (Some(_), Some(_)) => Err("the pooling config combines several modes".into()),
        }
    }
}

/// Pools one sequence. `hidden` is `mask.len()` rows of `dim` values; `mask` holds 1 for real
/// tokens and 0 for padding.
pub(crate) fn pool(hidden: &[f32], mask: &[u32], dim: usize, mode: Pooling) -> Vec<f32> {
    let rows = hidden.chunks_exact(dim).zip(mask);
    match mode {
        Pooling::Cls => hidden
            .get(..dim)
            .map(<[f32]>::to_vec)
            .unwrap_or_else(|| vec![0.0; dim]),
        Pooling::Mean | Pooling::MeanSqrtLen => {
            let mut sum = vec![0.0f32; dim];
            let mut count = 0.0f32;
            for (row, &m) in rows {
                if m != 0 {
                    count += 1.0;
                    for (s, v) in sum.iter_mut().zip(row) {
                        *s += v;
                    }
                }
            }
            // sentence-transformers clamps the token count at 1e-9 rather than dividing by zero.
            let count = count.max(1e-9);
            let divisor = if mode == Pooling::Mean {
                count
            } else {
                count.sqrt()
            };
            sum.iter_mut().for_each(|s| *s /= divisor);
            sum
        }
        Pooling::Max => {
            // sentence-transformers sets padded positions to -1e9 before taking the maximum.
            let mut max = vec![-1e9f32; dim];
            for (row, &m) in rows {
                if m != 0 {
                    for (x, v) in max.iter_mut().zip(row) {
                        *x = x.max(*v);
                    }
                }
            }
            max
        }
    }
}

/// In place, `v / max(‖v‖₂, 1e-12)` like `torch.nn.functional.normalize`.
pub(crate) fn l2_normalize(v: &mut [f32]) {
    let norm = v
        .iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum::<f64>()
        .sqrt();
    let norm = norm.max(1e-12) as f32;
    v.iter_mut().for_each(|x| *x /= norm);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_pooling_ignores_padding() {
        // Three positions of dim 2; the last is padding with huge values that must not count.
        let hidden = [1.0, 2.0, 3.0, 4.0, 1000.0, -1000.0];
        let mask = [1, 1, 0];
        assert_eq!(pool(&hidden, &mask, 2, Pooling::Mean), vec![2.0, 3.0]);
    }

    #[test]
    fn other_modes() {
        let hidden = [1.0, 5.0, 3.0, 4.0, 9.0, 9.0];
        let mask = [1, 1, 0];
        assert_eq!(pool(&hidden, &mask, 2, Pooling::Cls), vec![1.0, 5.0]);
        assert_eq!(pool(&hidden, &mask, 2, Pooling::Max), vec![3.0, 5.0]);
        let sqrt = pool(&hidden, &mask, 2, Pooling::MeanSqrtLen);
        assert!((sqrt[0] - 4.0 / 2f32.sqrt()).abs() < 1e-6);
    }

    #[test]
    fn all_padding_gives_zero_not_nan() {
        let v = pool(&[1.0, 2.0], &[0], 2, Pooling::Mean);
        assert_eq!(v, vec![0.0, 0.0]);
        let mut v = v;
        l2_normalize(&mut v);
        assert!(v.iter().all(|x| x.is_finite()));
    }

    #[test]
    fn normalisation_gives_unit_length() {
        let mut v = vec![3.0, 4.0];
        l2_normalize(&mut v);
        assert_eq!(v, vec![0.6, 0.8]);
        let mut w: Vec<f32> = (1..=384).map(|i| (i as f32).sin()).collect();
        l2_normalize(&mut w);
        let norm: f32 = w.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-6);
    }

    #[test]
    fn pooling_config_parsing() {
        let minilm = r#"{"word_embedding_dimension": 384, "pooling_mode_cls_token": false,
            "pooling_mode_mean_tokens": true, "pooling_mode_max_tokens": false,
            "pooling_mode_mean_sqrt_len_tokens": false}"#;
        assert_eq!(Pooling::from_config_json(minilm), Ok(Pooling::Mean));
        assert_eq!(
            Pooling::from_config_json(r#"{"pooling_mode_cls_token": true}"#),
            Ok(Pooling::Cls)
        );
        assert!(Pooling::from_config_json(r#"{}"#).is_err());
        assert!(
            Pooling::from_config_json(
                r#"{"pooling_mode_cls_token": true, "pooling_mode_mean_tokens": true}"#
            )
            .is_err()
        );
    }
}
