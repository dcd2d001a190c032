//! Partition a delimited log into shards by a hash of the user id, streaming.
//!
//! Each data row goes to shard `shard_of(user_id, shards)`. The rows of a shard keep their
//! order in the input, so the shard file is a valid log of the same layout. Beside it, a `.rows`
//! file holds the global row number of each of its rows, counted over all inputs without header
//! lines. Memory holds one record, one write buffer per shard and the set of user ids of each
//! shard, whatever the size of the input.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use rustc_hash::FxHashSet;

use crate::error::{Error, Result};

/// Maximum number of shards of one call, because each keeps an open file and a write buffer.
pub const MAX_SHARDS: usize = 4096;
/// Write buffer of each shard file.
const WRITE_BUFFER_BYTES: usize = 64 << 10;
/// Mixed into the user id before hashing, so shards are independent of the user split, which
/// hashes the same ids with splitmix64 and the split seed.
const SHARD_SALT: u64 = 0x5348_4152_4453_3031;

/// Mix `value` with the splitmix64 finaliser, a bijection on `u64` that spreads consecutive ids
/// over the whole range.
pub fn splitmix64(value: u64) -> u64 {
    let mut z = value.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Return the shard of `user` among `shards` (at least 1).
pub fn shard_of(user: i64, shards: usize) -> usize {
    (splitmix64((user as u64) ^ SHARD_SALT) % shards as u64) as usize
}

/// Return the shard of every user id; `shards` must be in 1..=[`MAX_SHARDS`].
pub fn shard_of_users(users: &[i64], shards: usize) -> Result<Vec<i64>> {
    check_shard_count(shards)?;
    Ok(users
        .iter()
        .map(|&user| shard_of(user, shards) as i64)
        .collect())
}

fn check_shard_count(shards: usize) -> Result<()> {
    if shards == 0 || shards > MAX_SHARDS {
        return Err(Error::InvalidArgument {
            argument: "shards".into(),
            message: format!("expected a count in 1..={MAX_SHARDS}, got {shards}"),
        });
    }
    Ok(())
}

/// Layout of the input files.
#[derive(Clone, Debug)]
pub struct PartitionOptions {
    pub delimiter: u8,
    /// `Some(names)` for files without a header line: the names of all columns, in order.
    pub headerless_names: Option<Vec<String>>,
    /// Column holding the int64 user id.
    pub user_column: String,
    pub shards: usize,
}

/// Counts of the rows and users written to each shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionSummary {
    /// Data rows written to each shard.
    pub rows: Vec<u64>,
    /// Distinct user ids of each shard.
    pub users: Vec<u64>,
}

/// Paths of shard `index` inside `folder`: the log file and the file of global row numbers
/// (little-endian int64, one per row of the log file).
pub fn shard_paths(folder: &Path, index: usize, extension: &str) -> (PathBuf, PathBuf) {
    (
        folder.join(format!("shard-{index:05}.{extension}")),
        folder.join(format!("shard-{index:05}.rows")),
    )
}

struct ShardWriter {
    log: csv::Writer<BufWriter<File>>,
    rows: BufWriter<File>,
    log_path: PathBuf,
    rows_path: PathBuf,
    row_count: u64,
    users: FxHashSet<i64>,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn csv_error(path: &Path, error: csv::Error) -> Error {
    let line = error.position().map(|p| p.line()).unwrap_or(0);
    match error.into_kind() {
        csv::ErrorKind::Io(source) => Error::Io {
            path: path.to_path_buf(),
            source,
        },
        kind => Error::Parse {
            path: path.to_path_buf(),
            line,
            column: None,
            message: format!("{kind:?}"),
        },
    }
}

/// Split `inputs` (read in order, all of the same layout) into `options.shards` files in
/// `folder`, named by [`shard_paths`] with `extension`.
///
/// Files with a header must all have the same header; each shard file starts with it. The
/// user id is parsed as int64, and a field that is not one fails with the file, the line and
/// the column.
pub fn partition_csv(
    inputs: &[PathBuf],
    folder: &Path,
    extension: &str,
    options: &PartitionOptions,
) -> Result<PartitionSummary> {
    check_shard_count(options.shards)?;
    if inputs.is_empty() {
        return Err(Error::InvalidArgument {
            argument: "inputs".into(),
            message: "expected at least one file, got none".into(),
        });
    }
    let mut writers = Vec::with_capacity(options.shards);
    for index in 0..options.shards {
        let (log_path, rows_path) = shard_paths(folder, index, extension);
        let log_file = File::create(&log_path).map_err(io_error(&log_path))?;
        let rows_file = File::create(&rows_path).map_err(io_error(&rows_path))?;
        writers.push(ShardWriter {
            log: csv::WriterBuilder::new()
                .delimiter(options.delimiter)
                .from_writer(BufWriter::with_capacity(WRITE_BUFFER_BYTES, log_file)),
            rows: BufWriter::with_capacity(WRITE_BUFFER_BYTES, rows_file),
            log_path,
            rows_path,
            row_count: 0,
            users: FxHashSet::default(),
        });
    }

    let mut header: Option<csv::ByteRecord> = None;
    let mut global_row: i64 = 0;
    for path in inputs {
        global_row = partition_file(path, options, &mut header, &mut writers, global_row)?;
    }

    let mut summary = PartitionSummary {
        rows: Vec::with_capacity(writers.len()),
        users: Vec::with_capacity(writers.len()),
    };
    for writer in writers {
        let ShardWriter {
            log,
            rows,
            log_path,
            rows_path,
            row_count,
            users,
        } = writer;
        finish(log.into_inner().map_err(|e| e.into_error()), &log_path)?;
        finish(Ok(rows), &rows_path)?;
        summary.rows.push(row_count);
        summary.users.push(users.len() as u64);
    }
    Ok(summary)
}

fn finish(writer: std::io::Result<BufWriter<File>>, path: &Path) -> Result<()> {
    let file = writer
        .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
        .map_err(io_error(path))?;
    file.sync_all().map_err(io_error(path))
}

/// Route the data rows of one file; returns the global row number after its last row.
fn partition_file(
    path: &Path,
    options: &PartitionOptions,
    header: &mut Option<csv::ByteRecord>,
    writers: &mut [ShardWriter],
    mut global_row: i64,
) -> Result<i64> {
    let file = File::open(path).map_err(io_error(path))?;
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(options.delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(file);
    let mut record = csv::ByteRecord::new();

    // The column names, from the options or from this file's first line.
    let names: Vec<String> = match &options.headerless_names {
        Some(names) => names.clone(),
        None => {
            if !reader
                .read_byte_record(&mut record)
                .map_err(|e| csv_error(path, e))?
            {
                return Err(Error::Parse {
                    path: path.to_path_buf(),
                    line: 1,
                    column: None,
                    message: "the file is empty; expected a header line".into(),
                });
            }
            if let Some(first) = header.as_ref() {
                if first != &record {
                    return Err(Error::Parse {
                        path: path.to_path_buf(),
                        line: 1,
                        column: None,
                        message: format!(
                            "header {:?} differs from the first file's {:?}; partition files \
                             of one layout together",
                            text_fields(&record),
                            text_fields(first)
                        ),
                    });
                }
            } else {
                for writer in writers.iter_mut() {
                    writer
                        .log
                        .write_byte_record(&record)
                        .map_err(|e| csv_error(&writer.log_path, e))?;
                }
                *header = Some(record.clone());
            }
            text_fields(&record)
        }
    };
    let key = names
        .iter()
        .position(|name| name == &options.user_column)
        .ok_or_else(|| Error::ColumnNotFound {
            path: path.to_path_buf(),
            column: options.user_column.clone(),
            available: names.clone(),
        })?;

    while reader
        .read_byte_record(&mut record)
        .map_err(|e| csv_error(path, e))?
    {
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        if record.len() != names.len() {
            return Err(Error::Parse {
                path: path.to_path_buf(),
                line,
                column: None,
                message: format!("expected {} fields, got {}", names.len(), record.len()),
            });
        }
        let user = parse_user(&record[key]).ok_or_else(|| Error::Parse {
            path: path.to_path_buf(),
            line,
            column: Some(options.user_column.clone()),
            message: format!(
                "expected an int64 user id, got {:?}",
                String::from_utf8_lossy(&record[key])
            ),
        })?;
        let writer = &mut writers[shard_of(user, options.shards)];
        writer
            .log
            .write_byte_record(&record)
            .map_err(|e| csv_error(&writer.log_path, e))?;
        writer
            .rows
            .write_all(&global_row.to_le_bytes())
            .map_err(io_error(&writer.rows_path))?;
        writer.row_count += 1;
        writer.users.insert(user);
        global_row += 1;
    }
    Ok(global_row)
}

fn text_fields(record: &csv::ByteRecord) -> Vec<String> {
    record
        .iter()
        .map(|field| String::from_utf8_lossy(field).trim().to_string())
        .collect()
}

fn parse_user(field: &[u8]) -> Option<i64> {
    std::str::from_utf8(field).ok()?.trim().parse::<i64>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(shards: usize) -> PartitionOptions {
        PartitionOptions {
            delimiter: b',',
            headerless_names: None,
            user_column: "user".into(),
            shards,
        }
    }

    fn scratch(name: &str) -> PathBuf {
        let folder =
            std::env::temp_dir().join(format!("recrl-partition-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&folder);
        std::fs::create_dir_all(&folder).unwrap();
        folder
    }

    fn read_rows(path: &Path) -> Vec<i64> {
        std::fs::read(path)
            .unwrap()
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }

    #[test]
    fn splitmix64_matches_known_values() {
        // First outputs of the reference generator seeded with 0 (state advanced before mixing).
        assert_eq!(splitmix64(0), 0xE220_A839_7B1D_CDAF);
        assert_eq!(splitmix64(0x9E37_79B9_7F4A_7C15), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn rows_follow_their_users_across_files() {
        let folder = scratch("files");
        let first = folder.join("a.csv");
        let second = folder.join("b.csv");
        std::fs::write(&first, "user,item\n1,10\n2,20\n1,11\n").unwrap();
        std::fs::write(&second, "user,item\n3,30\n2,21\n").unwrap();
        let out = folder.join("out");
        std::fs::create_dir_all(&out).unwrap();
        let summary = partition_csv(&[first, second], &out, "csv", &options(2)).unwrap();
        assert_eq!(summary.rows.iter().sum::<u64>(), 5);
        assert_eq!(summary.users.iter().sum::<u64>(), 3);
        let mut all_rows = Vec::new();
        for index in 0..2 {
            let (log, rows) = shard_paths(&out, index, "csv");
            let text = std::fs::read_to_string(log).unwrap();
            let mut lines = text.lines();
            assert_eq!(lines.next(), Some("user,item"));
            let rows = read_rows(&rows);
            for (line, row) in lines.zip(&rows) {
                let user: i64 = line.split(',').next().unwrap().parse().unwrap();
                assert_eq!(shard_of(user, 2), index);
                let expected = ["1,10", "2,20", "1,11", "3,30", "2,21"][*row as usize];
                assert_eq!(line, expected);
            }
            all_rows.extend(rows);
        }
        all_rows.sort_unstable();
        assert_eq!(all_rows, vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn bad_user_id_names_line_and_column() {
        let folder = scratch("bad");
        let input = folder.join("a.csv");
        std::fs::write(&input, "user,item\n1,10\nx,20\n").unwrap();
        let error = partition_csv(&[input], &folder, "csv", &options(2)).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("line 3"), "{message}");
        assert!(message.contains("column user"), "{message}");
    }

    #[test]
    fn shard_count_is_checked() {
        assert!(shard_of_users(&[1], 0).is_err());
        assert!(shard_of_users(&[1], MAX_SHARDS + 1).is_err());
        assert_eq!(
            shard_of_users(&[i64::MIN, i64::MAX], 1).unwrap(),
            vec![0, 0]
        );
    }

    #[test]
    fn missing_user_column_is_reported() {
        let folder = scratch("missing");
        let input = folder.join("a.csv");
        std::fs::write(&input, "id,item\n1,10\n").unwrap();
        let error = partition_csv(&[input], &folder, "csv", &options(1)).unwrap_err();
        assert!(matches!(error, Error::ColumnNotFound { .. }));
    }
}
