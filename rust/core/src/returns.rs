//! Discounted returns over ragged episodes: reward-to-go, n-step targets, TD(lambda) returns and
//! generalized advantage estimation (GAE), with K responses per row and one discount per response.
//!
//! Arrays are row-major: row t of a [N, K] array is `values[t * K..(t + 1) * K]`. Episodes are
//! CSR offsets (`episode_starts`, length E + 1). How an episode ends decides what follows its last
//! row: a terminated episode bootstraps 0, a truncated one bootstraps from the value of the
//! observation after its last step, and an episode whose last row carries neither flag (the log
//! stops there and gives no value) bootstraps 0.
//!
//! Inputs are float32, every sum is accumulated in float64, outputs are float32. Episodes are
//! processed in parallel in chunks of whole episodes.

use std::ops::Range;

use rayon::prelude::*;

use crate::error::{check_len, Error, Result};

/// Rows per parallel task. Smaller chunks balance ragged episodes better but cost more overhead.
const CHUNK_ROWS: usize = 1 << 15;

/// The way an episode ends, which decides the return after its last row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EpisodeEnd {
    /// The episode ended in the data: the return after the last row is 0.
    Terminated,
    /// The episode was cut by the data window: the return after the last row is the value of
    /// the next observation.
    Truncated,
    /// Neither flag is set, so the log ends without a value for what follows: bootstraps 0.
    Unflagged,
}

/// Validated episode boundaries and the way each episode ends.
#[derive(Clone, Debug)]
pub struct EpisodeLayout {
    starts: Vec<usize>,
    ends: Vec<EpisodeEnd>,
}

impl EpisodeLayout {
    /// Build the layout of `rows` rows from CSR offsets and per-row end flags.
    ///
    /// Without `episode_starts`, an episode ends after every row flagged in `terminals` or
    /// `truncations` and at the last row. With it, the offsets must start at 0, never decrease
    /// and end at `rows`, and a flag may only be set on the last row of an episode. A row may
    /// not be flagged both terminal and truncated.
    pub fn new(
        rows: usize,
        episode_starts: Option<&[i64]>,
        terminals: Option<&[u8]>,
        truncations: Option<&[u8]>,
    ) -> Result<Self> {
        if let Some(terminals) = terminals {
            check_len("terminals", terminals, rows)?;
        }
        if let Some(truncations) = truncations {
            check_len("truncations", truncations, rows)?;
        }

        let starts = match episode_starts {
            Some(offsets) => validate_offsets(offsets, rows)?,
            None => offsets_from_flags(rows, terminals, truncations),
        };
        let ends = classify_ends(&starts, terminals, truncations)?;
        Ok(EpisodeLayout { starts, ends })
    }

    /// Number of rows N.
    pub fn rows(&self) -> usize {
        *self.starts.last().unwrap_or(&0)
    }

    /// Number of episodes E, empty ones included.
    pub fn episode_count(&self) -> usize {
        self.starts.len() - 1
    }

    /// Rows of episode `episode`.
    pub fn episode_rows(&self, episode: usize) -> Range<usize> {
        self.starts[episode]..self.starts[episode + 1]
    }

    /// How each episode ends, length E.
    pub fn ends(&self) -> &[EpisodeEnd] {
        &self.ends
    }

    /// Split the episodes into ranges of consecutive episodes of about [`CHUNK_ROWS`] rows each.
    fn chunks(&self) -> Vec<Range<usize>> {
        let mut chunks = Vec::new();
        let mut first = 0;
        for episode in 0..self.episode_count() {
            if self.starts[episode + 1] - self.starts[first] >= CHUNK_ROWS {
                chunks.push(first..episode + 1);
                first = episode + 1;
            }
        }
        if first < self.episode_count() {
            chunks.push(first..self.episode_count());
        }
        chunks
    }
}

fn validate_offsets(offsets: &[i64], rows: usize) -> Result<Vec<usize>> {
    let Some((&first, &last)) = offsets.first().zip(offsets.last()) else {
        return Err(Error::shape(
            "episode_starts",
            "at least one offset (E + 1 values for E episodes)",
            "an empty array",
        ));
    };
    if first != 0 {
        return Err(Error::invalid(
            "episode_starts",
            format!("must start at 0, got episode_starts[0] = {first}"),
        ));
    }
    if let Some(i) = (1..offsets.len()).find(|&i| offsets[i] < offsets[i - 1]) {
        return Err(Error::invalid(
            "episode_starts",
            format!(
                "must be non-decreasing, but episode_starts[{i}] = {} is less than \
                 episode_starts[{}] = {}",
                offsets[i],
                i - 1,
                offsets[i - 1]
            ),
        ));
    }
    if last != rows as i64 {
        return Err(Error::invalid(
            "episode_starts",
            format!(
                "must end at the number of rows {rows}, got episode_starts[{}] = {last}",
                offsets.len() - 1
            ),
        ));
    }
    Ok(offsets.iter().map(|&offset| offset as usize).collect())
}

fn offsets_from_flags(
    rows: usize,
    terminals: Option<&[u8]>,
    truncations: Option<&[u8]>,
) -> Vec<usize> {
    let flagged = |row: usize| {
        terminals.is_some_and(|f| f[row] != 0) || truncations.is_some_and(|f| f[row] != 0)
    };
    let mut starts = vec![0];
    starts.extend((0..rows).filter(|&row| flagged(row)).map(|row| row + 1));
    if *starts.last().unwrap_or(&0) != rows {
        starts.push(rows);
    }
    starts
}

fn classify_ends(
    starts: &[usize],
    terminals: Option<&[u8]>,
    truncations: Option<&[u8]>,
) -> Result<Vec<EpisodeEnd>> {
    let interior_flag = |episode: usize| -> Option<(&'static str, usize)> {
        let interior = starts[episode]..starts[episode + 1].saturating_sub(1).max(starts[episode]);
        [("terminals", terminals), ("truncations", truncations)]
            .into_iter()
            .find_map(|(name, flags)| {
                let flags = flags?;
                let offset = flags[interior.clone()].iter().position(|&f| f != 0)?;
                Some((name, interior.start + offset))
            })
    };

    // Every flag sits on a last row exactly when each array contains as many set flags as there
    // are flagged last rows. Only when the counts differ is the slow search for the offender run.
    let episodes = starts.len() - 1;
    let flags_on_last_rows = |flags: Option<&[u8]>| {
        flags.is_none_or(|flags| {
            let set = flags.par_chunks(1 << 16).map(count_set).sum::<usize>();
            let on_last_rows = (0..episodes)
                .filter(|&episode| {
                    starts[episode] < starts[episode + 1] && flags[starts[episode + 1] - 1] != 0
                })
                .count();
            set == on_last_rows
        })
    };
    let interior_ok = flags_on_last_rows(terminals) && flags_on_last_rows(truncations);
    if !interior_ok {
        // Report the first offending row, whichever thread found one.
        let (episode, (name, row)) = (0..episodes)
            .find_map(|episode| interior_flag(episode).map(|found| (episode, found)))
            .expect("an interior flag was found in the parallel pass");
        return Err(Error::invalid(
            name,
            format!(
                "row {row} is flagged but is not the last row of its episode (episode {episode}, \
                 rows {}..{}); flags may only mark the last row of an episode",
                starts[episode],
                starts[episode + 1]
            ),
        ));
    }

    // Only last rows can carry flags now, so a row flagged twice is the last row of an episode.
    let mut ends = Vec::with_capacity(episodes);
    for episode in 0..episodes {
        let Some(last) = starts[episode + 1]
            .checked_sub(1)
            .filter(|_| starts[episode] < starts[episode + 1])
        else {
            ends.push(EpisodeEnd::Unflagged);
            continue;
        };
        let terminated = terminals.is_some_and(|flags| flags[last] != 0);
        let truncated = truncations.is_some_and(|flags| flags[last] != 0);
        ends.push(match (terminated, truncated) {
            (true, true) => {
                return Err(Error::invalid(
                    "terminals, truncations",
                    format!("row {last} is flagged both terminal and truncated; set at most one"),
                ))
            }
            (true, false) => EpisodeEnd::Terminated,
            (false, true) => EpisodeEnd::Truncated,
            (false, false) => EpisodeEnd::Unflagged,
        });
    }
    Ok(ends)
}

/// Count the non-zero bytes of `flags`, in byte-wide partial sums that the compiler vectorizes.
fn count_set(flags: &[u8]) -> usize {
    flags
        .chunks(255)
        .map(|block| {
            let partial = block
                .iter()
                .fold(0u8, |sum, &flag| sum.wrapping_add(u8::from(flag != 0)));
            usize::from(partial)
        })
        .sum()
}

/// Float32 rows of K values each: rewards, values or next values.
#[derive(Clone, Copy, Debug)]
pub struct Rows<'a> {
    data: &'a [f32],
    width: usize,
}

impl<'a> Rows<'a> {
    /// View `data` as rows of `width` values, naming the array `argument` in errors.
    pub fn new(argument: &str, data: &'a [f32], rows: usize, width: usize) -> Result<Self> {
        if data.len() != rows * width {
            return Err(Error::shape(
                argument,
                format!("{rows} rows of {width} values ({} in all)", rows * width),
                format!("{} values", data.len()),
            ));
        }
        Ok(Rows { data, width })
    }

    #[inline]
    fn row(&self, row: usize) -> &'a [f32] {
        &self.data[row * self.width..(row + 1) * self.width]
    }
}

fn check_gammas(gammas: &[f64]) -> Result<()> {
    if gammas.is_empty() {
        return Err(Error::shape(
            "gammas",
            "one discount per response (at least one)",
            "none",
        ));
    }
    if let Some((k, gamma)) = gammas
        .iter()
        .enumerate()
        .find(|(_, gamma)| !(0.0..=1.0).contains(*gamma))
    {
        return Err(Error::invalid(
            "gammas",
            format!("each discount must lie in [0, 1], got gammas[{k}] = {gamma}"),
        ));
    }
    Ok(())
}

fn check_lambda(lambda: f64) -> Result<()> {
    if (0.0..=1.0).contains(&lambda) {
        Ok(())
    } else {
        Err(Error::invalid(
            "lambda_",
            format!("must lie in [0, 1], got {lambda}"),
        ))
    }
}

/// Check that `data` has one row per episode, E rows of `width` values.
fn check_bootstrap<'a>(
    layout: &EpisodeLayout,
    bootstrap_values: Option<&'a [f32]>,
    width: usize,
) -> Result<Option<Rows<'a>>> {
    let episodes = layout.episode_count();
    match bootstrap_values {
        Some(data) => Ok(Some(Rows::new("bootstrap_values", data, episodes, width)?)),
        None => match layout
            .ends
            .iter()
            .position(|&end| end == EpisodeEnd::Truncated)
        {
            Some(episode) => {
                let rows = layout.episode_rows(episode);
                Err(Error::invalid(
                    "bootstrap_values",
                    format!(
                        "required because episode {episode} (rows {}..{}) ends truncated; pass \
                         the value of the observation after the last step of each episode",
                        rows.start, rows.end
                    ),
                ))
            }
            None => Ok(None),
        },
    }
}

/// Run `kernel` on each chunk of episodes in parallel, each with its own slice of every output.
///
/// The backward recurrences visit a chunk's episodes last to first, so that memory is read and
/// written in one descending stream that the hardware prefetcher follows. Walking episodes
/// forward and rows backward left most loads waiting on memory.
///
/// `kernel(episodes, first_row, outputs)` returns false when it produced a non-finite value.
/// Returns the outputs and whether every chunk stayed finite.
fn run_chunks<const OUTPUTS: usize, F>(
    layout: &EpisodeLayout,
    width: usize,
    kernel: F,
) -> ([Vec<f32>; OUTPUTS], bool)
where
    F: Fn(Range<usize>, usize, &mut [&mut [f32]; OUTPUTS]) -> bool + Sync,
{
    let mut outputs: [Vec<f32>; OUTPUTS] =
        std::array::from_fn(|_| zeroed_output(layout.rows() * width));
    let slices: [&mut [f32]; OUTPUTS] = {
        let mut iter = outputs.iter_mut();
        std::array::from_fn(|_| iter.next().expect("one vector per output").as_mut_slice())
    };
    let finite = run_chunks_into(layout, width, slices, kernel);
    (outputs, finite)
}

/// `run_chunks` writing into caller buffers of `layout.rows() * width` values each, which the
/// kernel overwrites entirely; returns whether every chunk stayed finite.
fn run_chunks_into<const OUTPUTS: usize, F>(
    layout: &EpisodeLayout,
    width: usize,
    outputs: [&mut [f32]; OUTPUTS],
    kernel: F,
) -> bool
where
    F: Fn(Range<usize>, usize, &mut [&mut [f32]; OUTPUTS]) -> bool + Sync,
{
    let chunks = layout.chunks();

    // Cut every output into one slice per chunk, in chunk order.
    let mut per_chunk: Vec<[&mut [f32]; OUTPUTS]> = Vec::with_capacity(chunks.len());
    let mut rests = outputs;
    for chunk in &chunks {
        let rows = layout.starts[chunk.end] - layout.starts[chunk.start];
        let slices: [&mut [f32]; OUTPUTS] = std::array::from_fn(|i| {
            let (head, tail) = std::mem::take(&mut rests[i]).split_at_mut(rows * width);
            rests[i] = tail;
            head
        });
        per_chunk.push(slices);
    }

    chunks
        .into_par_iter()
        .zip(per_chunk.into_par_iter())
        .map(|(chunk, mut slices)| {
            let first_row = layout.starts[chunk.start];
            kernel(chunk, first_row, &mut slices)
        })
        .reduce(|| true, |a, b| a && b)
}

/// Allocate a zeroed output buffer backed by huge pages where the kernel allows it.
///
/// The zeroed allocation leaves pages untouched until the kernel writes them, so the advice
/// applies before the first page fault.
fn zeroed_output(len: usize) -> Vec<f32> {
    let mut buffer = vec![0.0f32; len];
    crate::memory::advise_huge_pages(&mut buffer);
    buffer
}

/// The input arrays a kernel reads, searched for the first non-finite value after the fact.
struct Inputs<'a> {
    rewards: Rows<'a>,
    values: Option<Rows<'a>>,
    next_values: Option<Rows<'a>>,
    bootstrap_values: Option<Rows<'a>>,
}

impl Inputs<'_> {
    /// Find the first NaN or infinite input that a kernel reads, in row order.
    ///
    /// Next values are read on every row except the last row of a terminated or unflagged
    /// episode; bootstrap values only for truncated episodes.
    fn first_non_finite(&self, layout: &EpisodeLayout) -> Result<()> {
        for (episode, &end) in layout.ends.iter().enumerate() {
            let rows = layout.episode_rows(episode);
            for row in rows.clone() {
                let reads_next = row + 1 < rows.end || end == EpisodeEnd::Truncated;
                let arrays = [
                    ("rewards", Some(self.rewards)),
                    ("values", self.values),
                    ("next_values", self.next_values.filter(|_| reads_next)),
                ];
                for (name, array) in arrays {
                    if let Some(array) = array {
                        check_finite_row(name, array.row(row), row)?;
                    }
                }
            }
            if let Some(bootstrap) = self.bootstrap_values {
                if end == EpisodeEnd::Truncated {
                    check_finite_row("bootstrap_values", bootstrap.row(episode), episode)?;
                }
            }
        }
        Ok(())
    }
}

fn check_finite_row(name: &str, values: &[f32], row: usize) -> Result<()> {
    match values.iter().position(|value| !value.is_finite()) {
        None => Ok(()),
        Some(column) => Err(Error::InvalidValue {
            column: format!("{column} of {name}"),
            row: row as u64,
            message: format!("{} is not a finite number", values[column]),
        }),
    }
}

/// Turn a non-finite result into an error naming the first non-finite input, if there is one.
///
/// A result can also become infinite without bad input when a float64 sum exceeds the float32
/// range; such results are returned as they are.
fn finish<T>(layout: &EpisodeLayout, inputs: Inputs<'_>, finite: bool, result: T) -> Result<T> {
    if !finite {
        inputs.first_non_finite(layout)?;
    }
    Ok(result)
}

/// Discounted reward-to-go of every row: G_t = r_t + gamma * G_{t+1} within an episode.
///
/// `rewards` is [N, K] with K = `gammas.len()`. After the last row of an episode G is 0, unless
/// the episode is truncated: then it is row e of `bootstrap_values` [E, K], the value of the
/// observation after the last step. Returns [N, K].
pub fn discounted_returns(
    layout: &EpisodeLayout,
    rewards: &[f32],
    gammas: &[f64],
    bootstrap_values: Option<&[f32]>,
) -> Result<Vec<f32>> {
    let mut returns = zeroed_output(layout.rows() * gammas.len());
    discounted_returns_into(layout, rewards, gammas, bootstrap_values, &mut returns)?;
    Ok(returns)
}

/// `discounted_returns` written into `out` [N, K], which it overwrites entirely, so that a
/// caller can reuse one buffer across calls. On an error `out` may be partly written.
pub fn discounted_returns_into(
    layout: &EpisodeLayout,
    rewards: &[f32],
    gammas: &[f64],
    bootstrap_values: Option<&[f32]>,
    out: &mut [f32],
) -> Result<()> {
    check_gammas(gammas)?;
    let width = gammas.len();
    let rewards = Rows::new("rewards", rewards, layout.rows(), width)?;
    let bootstrap = check_bootstrap(layout, bootstrap_values, width)?;
    if out.len() != layout.rows() * width {
        return Err(Error::shape(
            "out",
            format!(
                "{} values ({} rows x {width})",
                layout.rows() * width,
                layout.rows()
            ),
            format!("{} values", out.len()),
        ));
    }

    let single_powers = BlockPowers::new(gammas[0]);
    let finite = run_chunks_into(layout, width, [out], |episodes, first_row, [out]| {
        let mut finite = true;
        for episode in episodes.rev() {
            let rows = layout.episode_rows(episode);
            if rows.is_empty() {
                continue;
            }
            let rewards = &rewards.data[rows.start * width..rows.end * width];
            let out = &mut out[(rows.start - first_row) * width..(rows.end - first_row) * width];
            let after_last = match (layout.ends[episode], bootstrap) {
                (EpisodeEnd::Truncated, Some(values)) => Some(values.row(episode)),
                _ => None,
            };
            finite &= match width {
                1 => episode_returns_single(rewards, out, &single_powers, after_last),
                2 => episode_returns::<2>(rewards, out, gammas, after_last),
                3 => episode_returns::<3>(rewards, out, gammas, after_last),
                4 => episode_returns::<4>(rewards, out, gammas, after_last),
                5 => episode_returns::<5>(rewards, out, gammas, after_last),
                6 => episode_returns::<6>(rewards, out, gammas, after_last),
                7 => episode_returns::<7>(rewards, out, gammas, after_last),
                8 => episode_returns::<8>(rewards, out, gammas, after_last),
                _ => episode_returns_any_width(rewards, out, gammas, after_last),
            };
        }
        finite
    });
    let inputs = Inputs {
        rewards,
        values: None,
        next_values: None,
        bootstrap_values: bootstrap,
    };
    finish(layout, inputs, finite, ())
}

/// Rows per block of the single-response reward-to-go.
const BLOCK: usize = 8;
const HALF: usize = BLOCK / 2;

/// gamma^0 ..= gamma^BLOCK for the single-response reward-to-go.
struct BlockPowers {
    gamma: f64,
    powers: [f64; BLOCK + 1],
}

impl BlockPowers {
    fn new(gamma: f64) -> Self {
        let mut powers = [1.0; BLOCK + 1];
        for i in 1..=BLOCK {
            powers[i] = powers[i - 1] * gamma;
        }
        BlockPowers { gamma, powers }
    }
}

/// Reward-to-go of one episode with one response, written to `out`; false if not finite.
///
/// The plain recurrence costs one multiply-add of latency per row. Here each block of BLOCK
/// rows first sums its own rewards backwards (G_local[j] = sum_{i>=j} gamma^(i-j) r_i), which
/// does not depend on the rows after the block, so the processor overlaps these sums across
/// blocks. Only G_j = G_local[j] + gamma^(BLOCK-j) G_after stays on the serial path, once per
/// block.
fn episode_returns_single(
    rewards: &[f32],
    out: &mut [f32],
    powers: &BlockPowers,
    after_last: Option<&[f32]>,
) -> bool {
    let gamma = powers.gamma;
    let mut g = after_last.map_or(0.0, |values| f64::from(values[0]));
    let mut reward_blocks = rewards.rchunks_exact(BLOCK);
    let mut out_blocks = out.rchunks_exact_mut(BLOCK);
    for (rewards, out) in (&mut reward_blocks).zip(&mut out_blocks) {
        // Two independent suffix sums over the halves, then the upper half's total carried
        // into the lower half: half the latency of one chain over the block.
        let mut local = [0.0f64; BLOCK];
        let (mut lower, mut upper) = (0.0, 0.0);
        for j in (0..HALF).rev() {
            lower = f64::from(rewards[j]) + gamma * lower;
            upper = f64::from(rewards[HALF + j]) + gamma * upper;
            local[j] = lower;
            local[HALF + j] = upper;
        }
        for (j, value) in local[..HALF].iter_mut().enumerate() {
            *value += powers.powers[HALF - j] * upper;
        }
        for j in 0..BLOCK {
            out[j] = (local[j] + powers.powers[BLOCK - j] * g) as f32;
        }
        g = local[0] + powers.powers[BLOCK] * g;
    }
    let rewards = reward_blocks.remainder();
    let out = out_blocks.into_remainder();
    for (reward, out) in rewards.iter().zip(out.iter_mut()).rev() {
        g = f64::from(*reward) + gamma * g;
        *out = g as f32;
    }
    g.is_finite()
}

/// Reward-to-go of one episode with `W` responses; the K chains overlap one another.
fn episode_returns<const W: usize>(
    rewards: &[f32],
    out: &mut [f32],
    gammas: &[f64],
    after_last: Option<&[f32]>,
) -> bool {
    let gammas: [f64; W] = std::array::from_fn(|k| gammas[k]);
    let mut g: [f64; W] = std::array::from_fn(|k| after_last.map_or(0.0, |v| f64::from(v[k])));
    for (reward, out) in rewards.chunks_exact(W).zip(out.chunks_exact_mut(W)).rev() {
        for k in 0..W {
            g[k] = f64::from(reward[k]) + gammas[k] * g[k];
            out[k] = g[k] as f32;
        }
    }
    g.iter().all(|value| value.is_finite())
}

/// Reward-to-go of one episode for any number of responses.
fn episode_returns_any_width(
    rewards: &[f32],
    out: &mut [f32],
    gammas: &[f64],
    after_last: Option<&[f32]>,
) -> bool {
    let width = gammas.len();
    let mut g: Vec<f64> = (0..width)
        .map(|k| after_last.map_or(0.0, |v| f64::from(v[k])))
        .collect();
    for (reward, out) in rewards
        .chunks_exact(width)
        .zip(out.chunks_exact_mut(width))
        .rev()
    {
        for k in 0..width {
            g[k] = f64::from(reward[k]) + gammas[k] * g[k];
            out[k] = g[k] as f32;
        }
    }
    g.iter().all(|value| value.is_finite())
}

/// Return the value of the observation after `row` for the recurrences that read next values:
/// the next value itself, except after the last row, where it is the bootstrap (truncated) or 0.
#[inline]
fn next_value(
    next_values: Rows<'_>,
    row: usize,
    last_row: usize,
    end: EpisodeEnd,
    k: usize,
) -> f64 {
    if row < last_row || end == EpisodeEnd::Truncated {
        f64::from(next_values.row(row)[k])
    } else {
        0.0
    }
}

/// n-step targets: G_t = sum_{i<m} gamma^i r_{t+i} + gamma^m V(s_{t+m}), m = min(n, steps left).
///
/// The window never crosses the end of an episode, so near the end it contains the m < n steps
/// left and the bootstrap is discounted by gamma^m. V(s_{t+m}) is row t+m-1 of `next_values`
/// [N, K], or 0 when that row is the last of a terminated or unflagged episode. Returns [N, K].
pub fn n_step_targets(
    layout: &EpisodeLayout,
    rewards: &[f32],
    next_values: &[f32],
    gammas: &[f64],
    n: usize,
) -> Result<Vec<f32>> {
    check_gammas(gammas)?;
    if n == 0 {
        return Err(Error::invalid("n", "must be at least 1, got 0"));
    }
    let width = gammas.len();
    let rewards = Rows::new("rewards", rewards, layout.rows(), width)?;
    let next_values = Rows::new("next_values", next_values, layout.rows(), width)?;

    // powers[i * K + k] = gammas[k]^i for every window length that can occur.
    let longest = (0..layout.episode_count())
        .map(|episode| layout.episode_rows(episode).len())
        .max()
        .unwrap_or(0);
    let max_window = n.min(longest);
    let mut powers = vec![1.0f64; (max_window + 1) * width];
    for i in 1..=max_window {
        for k in 0..width {
            powers[i * width + k] = powers[(i - 1) * width + k] * gammas[k];
        }
    }

    let ([targets], finite) = run_chunks(layout, width, |episodes, first_row, [out]| {
        let mut sums = vec![0.0f64; width];
        let mut finite = true;
        for episode in episodes {
            let rows = layout.episode_rows(episode);
            let end = layout.ends[episode];
            for row in rows.clone() {
                let window = n.min(rows.end - row);
                sums.fill(0.0);
                for i in 0..window {
                    let reward = rewards.row(row + i);
                    for k in 0..width {
                        sums[k] += powers[i * width + k] * f64::from(reward[k]);
                    }
                }
                let window_last = row + window - 1;
                let out = &mut out[(row - first_row) * width..(row - first_row + 1) * width];
                for k in 0..width {
                    let bootstrap = next_value(next_values, window_last, rows.end - 1, end, k);
                    let target = sums[k] + powers[window * width + k] * bootstrap;
                    finite &= target.is_finite();
                    out[k] = target as f32;
                }
            }
        }
        finite
    });
    let inputs = Inputs {
        rewards,
        values: None,
        next_values: Some(next_values),
        bootstrap_values: None,
    };
    finish(layout, inputs, finite, targets)
}

/// TD(lambda) returns: G_t = r_t + gamma ((1 - lambda) V(s_{t+1}) + lambda G_{t+1}).
///
/// V(s_{t+1}) is row t of `next_values` [N, K]. After the last row of an episode both V and G
/// are the bootstrap: row t of `next_values` if the episode is truncated, 0 otherwise. lambda = 1
/// gives the discounted return, lambda = 0 the one-step target. Returns [N, K].
pub fn lambda_returns(
    layout: &EpisodeLayout,
    rewards: &[f32],
    next_values: &[f32],
    gammas: &[f64],
    lambda: f64,
) -> Result<Vec<f32>> {
    check_gammas(gammas)?;
    check_lambda(lambda)?;
    let width = gammas.len();
    let rewards = Rows::new("rewards", rewards, layout.rows(), width)?;
    let next_values = Rows::new("next_values", next_values, layout.rows(), width)?;

    let ([returns], finite) = run_chunks(layout, width, |episodes, first_row, [out]| {
        let mut g = vec![0.0f64; width];
        let mut finite = true;
        for episode in episodes.rev() {
            let rows = layout.episode_rows(episode);
            if rows.is_empty() {
                continue;
            }
            let last_row = rows.end - 1;
            let end = layout.ends[episode];
            for row in rows.rev() {
                let reward = rewards.row(row);
                let out = &mut out[(row - first_row) * width..(row - first_row + 1) * width];
                for k in 0..width {
                    let next = next_value(next_values, row, last_row, end, k);
                    let blended = if row == last_row {
                        next
                    } else {
                        (1.0 - lambda) * next + lambda * g[k]
                    };
                    g[k] = f64::from(reward[k]) + gammas[k] * blended;
                    out[k] = g[k] as f32;
                }
            }
            finite &= g.iter().all(|value| value.is_finite());
        }
        finite
    });
    let inputs = Inputs {
        rewards,
        values: None,
        next_values: Some(next_values),
        bootstrap_values: None,
    };
    finish(layout, inputs, finite, returns)
}

/// Generalized advantage estimation (Schulman et al., "High-Dimensional Continuous Control
/// Using Generalized Advantage Estimation", arXiv:1506.02438), in recursive form.
///
/// delta_t = r_t + gamma V(s_{t+1}) - V(s_t) and A_t = delta_t + gamma lambda A_{t+1}, with
/// V(s_t) from `values` [N, K] and V(s_{t+1}) from `next_values` [N, K]; after the last row of an
/// episode V(s_{t+1}) is 0 unless the episode is truncated, and A is 0. Returns the advantages
/// A and the value targets A + V(s_t), both [N, K].
pub fn gae(
    layout: &EpisodeLayout,
    rewards: &[f32],
    values: &[f32],
    next_values: &[f32],
    gammas: &[f64],
    lambda: f64,
) -> Result<(Vec<f32>, Vec<f32>)> {
    check_gammas(gammas)?;
    check_lambda(lambda)?;
    let width = gammas.len();
    let rewards = Rows::new("rewards", rewards, layout.rows(), width)?;
    let values = Rows::new("values", values, layout.rows(), width)?;
    let next_values = Rows::new("next_values", next_values, layout.rows(), width)?;

    let ([advantages, targets], finite) = run_chunks(
        layout,
        width,
        |episodes, first_row, [advantages, targets]| {
            let mut a = vec![0.0f64; width];
            let mut finite = true;
            for episode in episodes.rev() {
                let rows = layout.episode_rows(episode);
                if rows.is_empty() {
                    continue;
                }
                let last_row = rows.end - 1;
                let end = layout.ends[episode];
                a.fill(0.0);
                for row in rows.rev() {
                    let reward = rewards.row(row);
                    let value = values.row(row);
                    let span = (row - first_row) * width..(row - first_row + 1) * width;
                    let (advantages, targets) = (&mut advantages[span.clone()], &mut targets[span]);
                    for k in 0..width {
                        let next = next_value(next_values, row, last_row, end, k);
                        let delta = f64::from(reward[k]) + gammas[k] * next - f64::from(value[k]);
                        a[k] = delta + gammas[k] * lambda * a[k];
                        advantages[k] = a[k] as f32;
                        targets[k] = (a[k] + f64::from(value[k])) as f32;
                    }
                }
                finite &= a.iter().all(|value| value.is_finite());
            }
            finite
        },
    );
    let inputs = Inputs {
        rewards,
        values: Some(values),
        next_values: Some(next_values),
        bootstrap_values: None,
    };
    finish(layout, inputs, finite, (advantages, targets))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(starts: &[i64], terminals: &[u8], truncations: &[u8]) -> EpisodeLayout {
        let rows = *starts.last().unwrap() as usize;
        EpisodeLayout::new(rows, Some(starts), Some(terminals), Some(truncations)).unwrap()
    }

    fn assert_close(actual: &[f32], expected: &[f32]) {
        assert_eq!(actual.len(), expected.len(), "{actual:?} vs {expected:?}");
        for (a, e) in actual.iter().zip(expected) {
            assert!(
                (a - e).abs() <= 1e-6 * (1.0 + e.abs()),
                "{actual:?} vs {expected:?}"
            );
        }
    }

    #[test]
    fn gae_terminated_episode_by_hand() {
        let layout = layout(&[0, 3], &[0, 0, 1], &[0, 0, 0]);
        let (advantages, targets) =
            gae(&layout, &[1.0; 3], &[2.0; 3], &[2.0; 3], &[0.5], 1.0).unwrap();
        assert_close(&advantages, &[-0.25, -0.5, -1.0]);
        assert_close(&targets, &[1.75, 1.5, 1.0]);
    }

    #[test]
    fn returns_split_by_terminal_flag() {
        let layout = EpisodeLayout::new(3, None, Some(&[0, 1, 0]), None).unwrap();
        assert_eq!(layout.episode_count(), 2);
        assert_eq!(
            layout.ends(),
            &[EpisodeEnd::Terminated, EpisodeEnd::Unflagged]
        );
        let returns = discounted_returns(&layout, &[1.0; 3], &[0.5], None).unwrap();
        assert_close(&returns, &[1.5, 1.0, 1.0]);
    }

    #[test]
    fn truncated_episode_bootstraps() {
        let layout = EpisodeLayout::new(2, None, None, Some(&[0, 1])).unwrap();
        let returns = discounted_returns(&layout, &[1.0, 1.0], &[0.5], Some(&[10.0])).unwrap();
        assert_close(&returns, &[4.0, 6.0]);
    }

    #[test]
    fn truncated_episode_needs_bootstrap_values() {
        let layout = EpisodeLayout::new(2, None, None, Some(&[0, 1])).unwrap();
        let error = discounted_returns(&layout, &[1.0, 1.0], &[0.5], None).unwrap_err();
        assert!(
            error.to_string().starts_with("bootstrap_values: required"),
            "{error}"
        );
    }

    #[test]
    fn returns_with_two_responses_and_empty_episode() {
        // Episodes: rows 0..2 (terminated), empty, row 2 (truncated, bootstrap 4 and 8).
        let layout = layout(&[0, 2, 2, 3], &[0, 1, 0], &[0, 0, 1]);
        let rewards = [1.0, 2.0, 1.0, 2.0, 1.0, 1.0];
        let bootstrap = [0.0, 0.0, 9.0, 9.0, 4.0, 8.0];
        let returns = discounted_returns(&layout, &rewards, &[0.5, 1.0], Some(&bootstrap)).unwrap();
        assert_close(&returns, &[1.5, 4.0, 1.0, 2.0, 3.0, 9.0]);
    }

    #[test]
    fn n_step_shortens_window_at_episode_end() {
        // One truncated episode of 3 rows, n = 2, gamma = 0.5, next values 10, 20, 30.
        let layout = layout(&[0, 3], &[0, 0, 0], &[0, 0, 1]);
        let targets =
            n_step_targets(&layout, &[1.0, 2.0, 4.0], &[10.0, 20.0, 30.0], &[0.5], 2).unwrap();
        // Row 0: 1 + 0.5 * 2 + 0.25 * 20; row 1: 2 + 0.5 * 4 + 0.25 * 30; row 2: 4 + 0.5 * 30.
        assert_close(&targets, &[7.0, 11.5, 19.0]);
    }

    #[test]
    fn n_step_terminal_window_bootstraps_zero() {
        let layout = layout(&[0, 2], &[0, 1], &[0, 0]);
        let targets = n_step_targets(&layout, &[1.0, 2.0], &[10.0, 99.0], &[0.5], 5).unwrap();
        assert_close(&targets, &[2.0, 2.0]);
    }

    #[test]
    fn lambda_returns_by_hand() {
        // Terminated episode of 2 rows, gamma 0.5, lambda 0.5, next values 4 and (unused) 100.
        let layout = layout(&[0, 2], &[0, 1], &[0, 0]);
        let returns = lambda_returns(&layout, &[1.0, 2.0], &[4.0, 100.0], &[0.5], 0.5).unwrap();
        // Row 1: 2. Row 0: 1 + 0.5 * (0.5 * 4 + 0.5 * 2) = 2.5.
        assert_close(&returns, &[2.5, 2.0]);
    }

    #[test]
    fn single_response_blocks_match_recurrence() {
        // Ragged episodes, some empty, some truncated, over several chunks.
        let mut starts = vec![0i64];
        let mut length = 0;
        while *starts.last().unwrap() < 3 * CHUNK_ROWS as i64 {
            length = (length * 7 + 3) % 41;
            starts.push(starts.last().unwrap() + length);
        }
        let rows = *starts.last().unwrap() as usize;
        let episodes = starts.len() - 1;
        let mut truncations = vec![0u8; rows];
        for e in (0..episodes).step_by(3) {
            if starts[e + 1] > starts[e] {
                truncations[starts[e + 1] as usize - 1] = 1;
            }
        }
        let layout = EpisodeLayout::new(rows, Some(&starts), None, Some(&truncations)).unwrap();
        let rewards: Vec<f32> = (0..rows).map(|i| ((i * 37) % 11) as f32 - 5.0).collect();
        let bootstrap: Vec<f32> = (0..episodes).map(|e| (e % 5) as f32).collect();

        let single = discounted_returns(&layout, &rewards, &[0.9], Some(&bootstrap)).unwrap();
        let doubled: Vec<f32> = rewards.iter().flat_map(|&r| [r, r]).collect();
        let doubled_bootstrap: Vec<f32> = bootstrap.iter().flat_map(|&b| [b, b]).collect();
        let pair =
            discounted_returns(&layout, &doubled, &[0.9, 0.9], Some(&doubled_bootstrap)).unwrap();
        let first_column: Vec<f32> = pair.iter().step_by(2).copied().collect();
        assert_close(&single, &first_column);
    }

    #[test]
    fn every_width_matches_single_columns() {
        let layout = layout(&[0, 5, 5, 17, 18], &[0; 18], &{
            let mut flags = [0u8; 18];
            flags[4] = 1;
            flags[17] = 1;
            flags
        });
        for width in 1..=10 {
            let gammas: Vec<f64> = (0..width).map(|k| 1.0 - k as f64 / 10.0).collect();
            let rewards: Vec<f32> = (0..18 * width).map(|i| ((i * 13) % 7) as f32).collect();
            let bootstrap: Vec<f32> = (0..4 * width).map(|i| i as f32).collect();
            let all = discounted_returns(&layout, &rewards, &gammas, Some(&bootstrap)).unwrap();
            for k in 0..width {
                let column = |data: &[f32]| -> Vec<f32> {
                    data.iter().skip(k).step_by(width).copied().collect()
                };
                let single = discounted_returns(
                    &layout,
                    &column(&rewards),
                    &gammas[k..=k],
                    Some(&column(&bootstrap)),
                )
                .unwrap();
                assert_close(&column(&all), &single);
            }
        }
    }

    #[test]
    fn nan_reward_names_row_and_column() {
        let layout = layout(&[0, 2, 3], &[0, 1, 1], &[0, 0, 0]);
        let rewards = [1.0, 1.0, 1.0, 1.0, 1.0, f32::NAN];
        let error = discounted_returns(&layout, &rewards, &[0.5, 0.5], None).unwrap_err();
        assert_eq!(
            error.to_string(),
            "column 1 of rewards, row 2: NaN is not a finite number"
        );
    }

    #[test]
    fn nan_next_value_after_terminal_is_ignored() {
        let layout = layout(&[0, 2], &[0, 1], &[0, 0]);
        let targets = n_step_targets(&layout, &[1.0, 1.0], &[0.0, f32::NAN], &[0.5], 1).unwrap();
        assert_close(&targets, &[1.0, 1.0]);
    }

    #[test]
    fn invalid_offsets_are_rejected() {
        let cases: [(&[i64], &str); 4] = [
            (&[], "episode_starts: expected at least one offset"),
            (&[1, 3], "episode_starts: must start at 0"),
            (&[0, 2, 1, 3], "episode_starts: must be non-decreasing"),
            (&[0, 2], "episode_starts: must end at the number of rows 3"),
        ];
        for (starts, expected) in cases {
            let error = EpisodeLayout::new(3, Some(starts), None, None).unwrap_err();
            assert!(error.to_string().starts_with(expected), "{error}");
        }
    }

    #[test]
    fn interior_flag_is_rejected() {
        let error = EpisodeLayout::new(3, Some(&[0, 3]), Some(&[0, 1, 0]), None).unwrap_err();
        assert!(
            error.to_string().starts_with("terminals: row 1 is flagged"),
            "{error}"
        );
    }

    #[test]
    fn doubly_flagged_row_is_rejected() {
        let error = EpisodeLayout::new(1, None, Some(&[1]), Some(&[1])).unwrap_err();
        assert!(
            error.to_string().contains("row 0 is flagged both"),
            "{error}"
        );
    }

    #[test]
    fn out_of_range_parameters_are_rejected() {
        let layout = layout(&[0, 1], &[1], &[0]);
        let error = discounted_returns(&layout, &[1.0], &[1.5], None).unwrap_err();
        assert!(error.to_string().contains("gammas[0] = 1.5"), "{error}");
        let error = discounted_returns(&layout, &[1.0], &[f64::NAN], None).unwrap_err();
        assert!(error.to_string().starts_with("gammas:"), "{error}");
        let error = lambda_returns(&layout, &[1.0], &[1.0], &[0.5], -0.1).unwrap_err();
        assert!(
            error.to_string().starts_with("lambda_: must lie in [0, 1]"),
            "{error}"
        );
        let error = n_step_targets(&layout, &[1.0], &[1.0], &[0.5], 0).unwrap_err();
        assert!(
            error.to_string().starts_with("n: must be at least 1"),
            "{error}"
        );
    }

    #[test]
    fn empty_log_gives_empty_output() {
        let layout = EpisodeLayout::new(0, None, None, None).unwrap();
        assert_eq!(layout.episode_count(), 0);
        assert!(discounted_returns(&layout, &[], &[0.9], None)
            .unwrap()
            .is_empty());
        let layout = EpisodeLayout::new(0, Some(&[0, 0]), None, None).unwrap();
        assert!(discounted_returns(&layout, &[], &[0.9], None)
            .unwrap()
            .is_empty());
    }
}
