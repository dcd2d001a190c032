//! An atomic CSV writer for numeric columns, used to write synthetic logs and scored outputs.

use std::fs::File;
use std::path::Path;

use crate::error::{Error, Result};

/// Values of one column to write.
#[derive(Clone, Copy, Debug)]
pub enum ColumnValues<'a> {
    Int64(&'a [i64]),
    Float64(&'a [f64]),
}

impl ColumnValues<'_> {
    fn len(&self) -> usize {
        match self {
            ColumnValues::Int64(values) => values.len(),
            ColumnValues::Float64(values) => values.len(),
        }
    }
}

/// Write columns as a delimited text file with a header line, atomically.
///
/// The rows go to a temporary file beside `path`, which is flushed, synced and renamed over
/// `path`, so a crash leaves either the old file or the complete new one. Floats are written in
/// their shortest exact form; NaN is written as an empty field.
pub fn write_csv(path: &Path, delimiter: u8, columns: &[(String, ColumnValues<'_>)]) -> Result<()> {
    use std::io::Write;

    crate::csv_reader::check_delimiter(delimiter)?;
    let rows = columns.first().map_or(0, |(_, values)| values.len());
    for (name, values) in columns {
        if values.len() != rows {
            return Err(Error::shape(
                name.as_str(),
                format!("length {rows} like the first column"),
                format!("length {}", values.len()),
            ));
        }
    }
    let io_error = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| Error::invalid("path", format!("{} has no file name", path.display())))?;
    let temporary = path.with_file_name(format!(".{}.tmp", file_name.to_string_lossy()));
    let file = File::create(&temporary).map_err(io_error)?;
    let mut writer = std::io::BufWriter::with_capacity(1 << 20, file);

    let header: Vec<&str> = columns.iter().map(|(name, _)| name.as_str()).collect();
    let mut line = header.join(&(delimiter as char).to_string()).into_bytes();
    line.push(b'\n');
    writer.write_all(&line).map_err(io_error)?;
    let mut integers = itoa::Buffer::new();
    let mut floats = ryu::Buffer::new();
    for row in 0..rows {
        line.clear();
        for (position, (_, values)) in columns.iter().enumerate() {
            if position > 0 {
                line.push(delimiter);
            }
            match values {
                ColumnValues::Int64(values) => {
                    line.extend_from_slice(integers.format(values[row]).as_bytes())
                }
                ColumnValues::Float64(values) => {
                    let value = values[row];
                    if value.is_finite() && value == value.trunc() && value.abs() < 1e15 {
                        line.extend_from_slice(integers.format(value as i64).as_bytes());
                    } else if value.is_finite() {
                        line.extend_from_slice(floats.format(value).as_bytes());
                    }
                }
            }
        }
        line.push(b'\n');
        writer.write_all(&line).map_err(io_error)?;
    }
    let file = writer
        .into_inner()
        .map_err(|error| io_error(error.into_error()))?;
    file.sync_all().map_err(io_error)?;
    std::fs::rename(&temporary, path).map_err(io_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_file_reads_back_exactly() {
        let directory = std::env::temp_dir().join(format!("recrl-csv-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let path = directory.join("out.csv");
        let ids = [110378652104i64, -5];
        let values = [1.5f64, f64::NAN];
        let columns = [
            ("id".to_owned(), ColumnValues::Int64(&ids)),
            ("value".to_owned(), ColumnValues::Float64(&values)),
        ];
        write_csv(&path, b',', &columns).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "id,value\n110378652104,1.5\n-5,\n");
        std::fs::remove_dir_all(&directory).unwrap();
    }

    #[test]
    fn unequal_columns_are_rejected() {
        let columns = [
            ("a".to_owned(), ColumnValues::Int64(&[1, 2])),
            ("b".to_owned(), ColumnValues::Int64(&[1])),
        ];
        let error = write_csv(Path::new("unused.csv"), b',', &columns).unwrap_err();
        assert!(
            error.to_string().contains("b: expected length 2"),
            "{error}"
        );
    }
}
