//! KuaiRand response columns derived from play and video durations, in one parallel pass.

use rayon::prelude::*;

use crate::error::{check_len, Result};

/// Rows per task of the parallel pass.
const CHUNK_ROWS: usize = 1 << 16;

/// Watch time, watch ratio and the repair flags of a KuaiRand log.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WatchResponses {
    /// Play time in seconds, negative play times clipped to 0.
    pub watch_time: Vec<f32>,
    /// Clipped play time divided by the video duration; 0 where the duration is 0 or negative.
    pub watch_ratio: Vec<f32>,
    /// 1 where the duration is 0 or negative, so the watch ratio is undefined.
    pub duration_zero: Vec<u8>,
    /// Rows whose play time was negative and clipped to 0.
    pub negative_play_rows: usize,
    /// Rows whose duration was 0 or negative.
    pub zero_duration_rows: usize,
}

/// Derive watch time (s) and watch ratio from `play_ms` and `duration_ms` (milliseconds).
///
/// Values are computed in double precision and rounded to single precision at the end, as
/// `(play / 1000.0).astype(float32)` and `(play / duration).astype(float32)` would be in NumPy.
/// For example play 60792 ms over duration 45400 ms gives ratio 1.339.
pub fn watch_responses(play_ms: &[i64], duration_ms: &[i64]) -> Result<WatchResponses> {
    let n = play_ms.len();
    check_len("duration_ms", duration_ms, n)?;
    let mut responses = WatchResponses {
        watch_time: vec![0.0; n],
        watch_ratio: vec![0.0; n],
        duration_zero: vec![0; n],
        ..WatchResponses::default()
    };
    let (negative, zero) = responses
        .watch_time
        .par_chunks_mut(CHUNK_ROWS)
        .zip(responses.watch_ratio.par_chunks_mut(CHUNK_ROWS))
        .zip(responses.duration_zero.par_chunks_mut(CHUNK_ROWS))
        .zip(play_ms.par_chunks(CHUNK_ROWS))
        .zip(duration_ms.par_chunks(CHUNK_ROWS))
        .map(|((((time, ratio), zero_flag), play), duration)| {
            let mut counts = (0usize, 0usize);
            for row in 0..play.len() {
                let clipped = if play[row] < 0 {
                    counts.0 += 1;
                    0
                } else {
                    play[row]
                };
                time[row] = (clipped as f64 / 1000.0) as f32;
                if duration[row] <= 0 {
                    counts.1 += 1;
                    zero_flag[row] = 1;
                } else {
                    ratio[row] = (clipped as f64 / duration[row] as f64) as f32;
                }
            }
            counts
        })
        .reduce(|| (0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    responses.negative_play_rows = negative;
    responses.zero_duration_rows = zero;
    Ok(responses)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_ratio_cases() {
        let result = watch_responses(&[60792, 0, -5, 1000], &[45400, 0, 100, -1]).unwrap();
        assert!((result.watch_ratio[0] - 1.339).abs() < 5e-4);
        assert_eq!(result.watch_ratio[1..], [0.0, 0.0, 0.0]);
        assert_eq!(result.watch_time, vec![60.792, 0.0, 0.0, 1.0]);
        assert_eq!(result.duration_zero, vec![0, 1, 0, 1]);
        assert_eq!(result.negative_play_rows, 1);
        assert_eq!(result.zero_duration_rows, 2);
    }

    #[test]
    fn lengths_must_match() {
        assert!(watch_responses(&[1, 2], &[1]).is_err());
        assert_eq!(
            watch_responses(&[], &[]).unwrap(),
            WatchResponses::default()
        );
    }
}
