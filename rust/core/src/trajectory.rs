//! Episodes from interaction logs: stable ordering by (user, time, row), episode cuts,
//! terminal and truncation flags, next-row indices and item-history windows.
//!
//! Every function takes plain slices and returns owned vectors, so the bindings can release the
//! GIL around them and hand the results to NumPy without a copy.

use rayon::prelude::*;
use rustc_hash::{FxHashMap, FxHashSet};

use crate::error::{check_len, Error, Result};

/// Return the permutation that sorts rows by (user, time), ties kept in original row order.
///
/// The sort is stable: rows with equal (user, time) keep their file order. KuaiRand logs put
/// most consecutive exposures of a user in the same second, so this tie-break decides the order
/// of most steps and must be reproducible.
///
/// Rows are first grouped by user with a counting sort over the distinct users (found with a
/// hash map, then ranked), which keeps file order inside each group. Each group is then sorted
/// by time with a stable sort, in parallel across users. Logs are usually written in time order,
/// so the per-user sorts mostly find runs that are already sorted.
pub fn stable_order(users: &[i64], times: &[i64]) -> Result<Vec<i64>> {
    check_len("times", times, users.len())?;
    let n = users.len();
    let already_sorted = (1..n)
        .into_par_iter()
        .all(|i| (users[i - 1], times[i - 1]) <= (users[i], times[i]));
    if already_sorted {
        return Ok((0..n as i64).collect());
    }

    // Dense user codes in order of first appearance, then their rank in sorted user order.
    let mut code_of: FxHashMap<i64, u32> = FxHashMap::default();
    let mut distinct: Vec<i64> = Vec::new();
    let codes: Vec<u32> = users
        .iter()
        .map(|&user| {
            *code_of.entry(user).or_insert_with(|| {
                distinct.push(user);
                (distinct.len() - 1) as u32
            })
        })
        .collect();
    let mut by_user: Vec<u32> = (0..distinct.len() as u32).collect();
    by_user.par_sort_unstable_by_key(|&code| distinct[code as usize]);
    let mut rank = vec![0u32; distinct.len()];
    for (position, &code) in by_user.iter().enumerate() {
        rank[code as usize] = position as u32;
    }

    // Counting sort by rank: group starts, then rows scattered in file order.
    let mut starts = vec![0usize; distinct.len() + 1];
    for &code in &codes {
        starts[rank[code as usize] as usize + 1] += 1;
    }
    for group in 1..starts.len() {
        starts[group] += starts[group - 1];
    }
    let mut cursor = starts.clone();
    let mut order = vec![0i64; n];
    for (row, &code) in codes.iter().enumerate() {
        let slot = &mut cursor[rank[code as usize] as usize];
        order[*slot] = row as i64;
        *slot += 1;
    }

    // Sort each user's rows by time; the stable sort keeps file order for equal times.
    let mut groups = Vec::with_capacity(distinct.len());
    let mut rest = order.as_mut_slice();
    for window in starts.windows(2) {
        let (group, tail) = rest.split_at_mut(window[1] - window[0]);
        groups.push(group);
        rest = tail;
    }
    groups
        .into_par_iter()
        .for_each(|group| group.sort_by_key(|&row| times[row as usize]));
    Ok(order)
}

/// Gather `values[order[i]]` for every i, in parallel.
pub fn take<T: Copy + Send + Sync>(values: &[T], order: &[i64]) -> Result<Vec<T>> {
    let n = values.len() as i64;
    if let Some(bad) = order.iter().find(|&&row| row < 0 || row >= n) {
        return Err(Error::invalid(
            "order",
            format!("index {bad} is out of range for {n} rows"),
        ));
    }
    Ok(order.par_iter().map(|&row| values[row as usize]).collect())
}

/// Options for cutting episodes and flagging their ends.
#[derive(Clone, Debug)]
pub struct EpisodeOptions {
    /// Cut a user's rows where the time to the next row exceeds this many milliseconds.
    /// `None` keeps one episode per user (per segment).
    pub session_gap_ms: Option<i64>,
    /// The end of the data window in milliseconds; defaults to the latest timestamp.
    pub window_end_ms: Option<i64>,
    /// A user whose last row lies within this many milliseconds of the window end may still be
    /// active, so their last episode is truncated rather than terminated.
    pub active_within_ms: i64,
}

/// Episodes as CSR offsets plus per-row flags, all in the sorted row order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Episodes {
    /// Row where each episode starts, plus the row count at the end: length E + 1.
    pub episode_starts: Vec<i64>,
    /// 1 on the last row of an episode that ended in the data (the user left or the session ended).
    pub terminals: Vec<u8>,
    /// 1 on the last row of an episode cut by the data window or a split boundary.
    pub truncations: Vec<u8>,
    /// Row of the next step of the same episode, or -1 on an episode's last row.
    pub next_index: Vec<i64>,
}

/// Cut sorted rows into episodes and flag how each one ends.
///
/// Rows must already be sorted by (user, time). A new episode starts in four places:
/// - where the user changes;
/// - where `segments` changes, a split boundary, which truncates the earlier part;
/// - after a row whose `episode_ends` flag is set, which terminates the episode;
/// - with a session gap, where the time to the user's next row exceeds it (terminated).
///
/// A user's last episode is truncated when it ends within `active_within_ms` of the window end,
/// and terminated otherwise.
pub fn build_episodes(
    users: &[i64],
    times: &[i64],
    segments: Option<&[u8]>,
    episode_ends: Option<&[u8]>,
    options: &EpisodeOptions,
) -> Result<Episodes> {
    let n = users.len();
    check_len("times", times, n)?;
    if let Some(segments) = segments {
        check_len("segments", segments, n)?;
    }
    if let Some(ends) = episode_ends {
        check_len("episode_ends", ends, n)?;
    }
    if let Some(gap) = options.session_gap_ms {
        if gap < 0 {
            return Err(Error::invalid(
                "session_gap_ms",
                format!("must be non-negative, got {gap}"),
            ));
        }
    }
    if options.active_within_ms < 0 {
        return Err(Error::invalid(
            "active_within_ms",
            format!("must be non-negative, got {}", options.active_within_ms),
        ));
    }
    if let Some(row) = (1..n).find(|&i| (users[i - 1], times[i - 1]) > (users[i], times[i])) {
        return Err(Error::invalid(
            "users, times",
            format!(
                "rows must be sorted by (user, time), but row {row} (user {}, time {}) comes after \
                 (user {}, time {}); sort with stable_order first",
                users[row],
                times[row],
                users[row - 1],
                times[row - 1]
            ),
        ));
    }

    let window_end = options
        .window_end_ms
        .unwrap_or_else(|| times.iter().copied().max().unwrap_or(0));
    let mut episodes = Episodes {
        episode_starts: Vec::with_capacity(n / 8 + 2),
        terminals: vec![0; n],
        truncations: vec![0; n],
        next_index: vec![-1; n],
    };

    for i in 0..n {
        if i == 0 || episodes.next_index[i - 1] == -1 {
            episodes.episode_starts.push(i as i64);
        }
        let last_of_user = i + 1 == n || users[i + 1] != users[i];
        let flagged_end = episode_ends.is_some_and(|ends| ends[i] != 0);
        let segment_change =
            !last_of_user && segments.is_some_and(|segments| segments[i + 1] != segments[i]);
        let session_end = !last_of_user
            && options
                .session_gap_ms
                .is_some_and(|gap| times[i + 1] - times[i] > gap);

        if flagged_end || session_end {
            episodes.terminals[i] = 1;
        } else if segment_change {
            episodes.truncations[i] = 1;
        } else if last_of_user {
            let may_still_be_active = window_end - times[i] < options.active_within_ms;
            if may_still_be_active {
                episodes.truncations[i] = 1;
            } else {
                episodes.terminals[i] = 1;
            }
        } else {
            episodes.next_index[i] = i as i64 + 1;
        }
    }
    episodes.episode_starts.push(n as i64);
    Ok(episodes)
}

/// Fill, for each row, the items of the `length` previous rows of the same user, most recent
/// first, padded with 0.
///
/// Rows must be sorted by (user, time). Step t's own item is never in its window, because it is
/// the action taken at t. Items are dense indices where 0 means padding or unknown.
pub fn history_windows(users: &[i64], items: &[i64], length: usize) -> Result<Vec<i64>> {
    let n = users.len();
    check_len("items", items, n)?;
    let mut windows = vec![0i64; n * length];
    if length == 0 || n == 0 {
        return Ok(windows);
    }

    let mut user_start = vec![0usize; n];
    for i in 1..n {
        user_start[i] = if users[i] == users[i - 1] {
            user_start[i - 1]
        } else {
            i
        };
    }
    windows
        .par_chunks_mut(length)
        .enumerate()
        .for_each(|(row, window)| {
            let first = user_start[row];
            for (slot, previous) in window.iter_mut().zip((first..row).rev()) {
                *slot = items[previous];
            }
        });
    Ok(windows)
}

/// Map ids to dense indices 1..=V over the sorted distinct ids of `vocabulary_source`; ids not in
/// it map to 0, the unknown index. Returns the codes and the vocabulary (code k is
/// `vocabulary[k - 1]`).
pub fn encode_ids(vocabulary_source: &[i64], values: &[i64]) -> (Vec<i64>, Vec<i64>) {
    let mut vocabulary = vocabulary_source.to_vec();
    vocabulary.par_sort_unstable();
    vocabulary.dedup();
    let codes = values
        .par_iter()
        .map(|value| match vocabulary.binary_search(value) {
            Ok(position) => position as i64 + 1,
            Err(_) => 0,
        })
        .collect();
    (codes, vocabulary)
}

/// Count the distinct values of `values`.
pub fn count_distinct(values: &[i64]) -> usize {
    let mut seen: FxHashSet<i64> = FxHashSet::default();
    seen.extend(values.iter().copied());
    seen.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(gap: Option<i64>) -> EpisodeOptions {
        EpisodeOptions {
            session_gap_ms: gap,
            window_end_ms: None,
            active_within_ms: 0,
        }
    }

    #[test]
    fn stable_order_breaks_time_ties_by_row() {
        // One user, rows (t=30, C), (t=10, A), (t=20, B), (t=20, D) -> A, B, D, C.
        let order = stable_order(&[5, 5, 5, 5], &[30, 10, 20, 20]).unwrap();
        assert_eq!(order, vec![1, 2, 3, 0]);
    }

    #[test]
    fn episodes_cut_at_user_change_and_gap() {
        let users = [1, 1, 1, 2];
        let times = [0, 10, 100, 5];
        let episodes = build_episodes(&users, &times, None, None, &options(Some(50))).unwrap();
        assert_eq!(episodes.episode_starts, vec![0, 2, 3, 4]);
        assert_eq!(episodes.terminals, vec![0, 1, 1, 1]);
        assert_eq!(episodes.truncations, vec![0, 0, 0, 0]);
        assert_eq!(episodes.next_index, vec![1, -1, -1, -1]);
    }

    #[test]
    fn flagged_ends_give_one_step_episodes() {
        let episodes = build_episodes(
            &[1, 1, 1],
            &[1, 2, 3],
            None,
            Some(&[1, 1, 1]),
            &options(None),
        )
        .unwrap();
        assert_eq!(episodes.episode_starts, vec![0, 1, 2, 3]);
        assert_eq!(episodes.terminals, vec![1, 1, 1]);
    }

    #[test]
    fn last_episode_near_window_end_is_truncated() {
        let mut opts = options(None);
        opts.window_end_ms = Some(1_000);
        opts.active_within_ms = 100;
        let episodes = build_episodes(&[1, 2], &[950, 10], None, None, &opts).unwrap();
        assert_eq!(episodes.truncations, vec![1, 0]);
        assert_eq!(episodes.terminals, vec![0, 1]);
    }

    #[test]
    fn segment_change_truncates_earlier_part() {
        let episodes =
            build_episodes(&[1, 1], &[1, 2], Some(&[0, 1]), None, &options(None)).unwrap();
        assert_eq!(episodes.episode_starts, vec![0, 1, 2]);
        assert_eq!(episodes.truncations, vec![1, 0]);
        assert_eq!(episodes.terminals, vec![0, 1]);
    }

    #[test]
    fn unsorted_rows_are_rejected() {
        let error = build_episodes(&[2, 1], &[0, 0], None, None, &options(None)).unwrap_err();
        assert!(error.to_string().contains("row 1"), "{error}");
    }

    #[test]
    fn empty_input_gives_no_episodes() {
        let episodes = build_episodes(&[], &[], None, None, &options(None)).unwrap();
        assert_eq!(episodes.episode_starts, vec![0]);
    }

    #[test]
    fn history_excludes_current_item() {
        let windows = history_windows(&[1, 1, 1, 2], &[7, 8, 9, 4], 2).unwrap();
        assert_eq!(windows, vec![0, 0, 7, 0, 8, 7, 0, 0]);
    }

    #[test]
    fn count_distinct_counts_each_value_once() {
        assert_eq!(count_distinct(&[3, i64::MIN, 3, i64::MAX]), 3);
        assert_eq!(count_distinct(&[]), 0);
    }

    #[test]
    fn encode_ids_reserves_zero_for_unknown() {
        let (codes, vocabulary) = encode_ids(&[30, 10, 30], &[10, 20, 30, i64::MAX]);
        assert_eq!(vocabulary, vec![10, 30]);
        assert_eq!(codes, vec![1, 0, 2, 0]);
    }
}
